package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The headers nats-server's stream republish puts on the copy of each stored frame.
const (
	headerSequence     = "Nats-Sequence"
	headerLastSequence = "Nats-Last-Sequence"
)

// storedSuffix is appended to a room's subject for the republished copies of its frames.
const storedSuffix = ".stored"

const (
	// liveBuffer is how many live copies may wait while history is read. When it is full
	// nats.go drops the newest (a slow consumer), which only opens a gap that history fills.
	liveBuffer = 4096
	// catchUpPatience bounds the wait for a frame seen live to show in history (a
	// clustered stream's replica may lag the leader that republished it).
	catchUpPatience = 30 * time.Second
	retryPause      = 100 * time.Millisecond
)

// sink receives what a follower delivers, in stream order.
type sink interface {
	// frame is one stored frame and its stream sequence.
	frame(seq uint64, raw []byte) error
	// gap says frames first..last were stored but are no longer (the room's retention
	// removed them before this follower read them): they will never be delivered.
	gap(first, last uint64) error
	// reconnected says the connection came back (a cut, a NATS restart, an expired JWT,
	// a re-authorization); the frames sent meanwhile are read from history next.
	reconnected()
}

// follower delivers every stored frame of one room exactly once, in stream order, from
// the frame after `cursor` on: live copies from `<room subject>.stored` while they come in
// order, and the room's history (`after=<cursor>`) whenever one is missing: at start, after
// each reconnect, when a copy's sequence jumps, on a revocation notice and when the server
// refuses the live subscription. Copies at or below the cursor are duplicates and dropped.
// A revocation ends it with the control plane's 403 (404 once the room is deleted).
type follower struct {
	s        *session
	room     string
	cursor   uint64
	pageSize int
	out      sink
}

// follow runs until ctx ends (nil) or the room can no longer be read (a *ServiceError).
func (f *follower) follow(ctx context.Context) error {
	err := f.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (f *follower) run(ctx context.Context) error {
	info, err := f.call(ctx, f.room+".info", nil)
	if err != nil {
		return err
	}
	var r room
	if err := json.Unmarshal(info, &r); err != nil {
		return fmt.Errorf("room object: %w", err)
	}
	stored := r.Subject + storedSuffix
	live := make(chan *nats.Msg, liveBuffer)
	sub, err := f.s.nc.ChanSubscribe(stored, live)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()

	reconnected := f.s.reconnected.wait()
	if err := f.catchUp(ctx, 0); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-live:
			seq, ok := storedSequence(m)
			switch {
			case !ok || seq <= f.cursor: // not a stored copy, or a duplicate
			case seq == f.cursor+1:
				if err := f.deliver(seq, m.Data); err != nil {
					return err
				}
			default:
				err = f.catchUp(ctx, seq)
			}
		case <-reconnected:
			reconnected = f.s.reconnected.wait()
			f.out.reconnected()
			err = f.catchUp(ctx, 0)
		case n := <-f.s.notices:
			if n.Event == "revoked" && n.Room == f.room {
				err = f.catchUp(ctx, 0) // a 403 if it is true
			}
		case failure := <-f.s.failures:
			if refuses(failure, stored) {
				err = f.catchUp(ctx, 0)
			}
		}
		if err != nil {
			return err
		}
	}
}

// storedSequence is the stream sequence nats-server stamped on a republished copy. The
// server appends its headers after any the publisher sent, so a publisher that forged
// Nats-Sequence on its own frame only adds an earlier value: the last one is the server's.
func storedSequence(m *nats.Msg) (uint64, bool) {
	if m.Header == nil {
		return 0, false
	}
	values := m.Header.Values(headerSequence)
	if len(values) == 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(values[len(values)-1], 10, 64)
	return seq, err == nil && seq > 0
}

// refuses reports whether err is the server refusing the subscription to subject.
func refuses(err error, subject string) bool {
	text := strings.ToLower(err.Error())
	return strings.Contains(text, nats.PERMISSIONS_ERR) && strings.Contains(text, strings.ToLower(subject))
}

// catchUp reads history after the cursor until it is empty, and past `until` (a sequence
// seen live) when that is not 0.
func (f *follower) catchUp(ctx context.Context, until uint64) error {
	deadline := time.Now().Add(catchUpPatience)
	for {
		page, err := f.page(ctx)
		if err != nil {
			return err
		}
		if len(page.Messages) > 0 {
			if page.Seqs[len(page.Seqs)-1] <= f.cursor {
				// An instance that does not know `after` answers with the newest page.
				return fmt.Errorf("room %s: history ignored after=%d: the control plane is too old to follow", f.room, f.cursor)
			}
			for i, raw := range page.Messages {
				if err := f.deliver(page.Seqs[i], raw); err != nil {
					return err
				}
			}
			continue
		}
		if f.cursor >= until {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("room %s: frame %d was seen live but never showed in history", f.room, until)
		}
		if !sleep(ctx, retryPause) {
			return ctx.Err()
		}
	}
}

// deliver hands out the frame at seq, after the gap before it if there is one.
func (f *follower) deliver(seq uint64, raw []byte) error {
	if seq <= f.cursor {
		return nil
	}
	if seq > f.cursor+1 {
		if err := f.out.gap(f.cursor+1, seq-1); err != nil {
			return err
		}
	}
	if err := f.out.frame(seq, raw); err != nil {
		return err
	}
	f.cursor = seq
	return nil
}

// page is one history page after the cursor, oldest first, with each frame's sequence.
func (f *follower) page(ctx context.Context) (*historyPage, error) {
	query := url.Values{"after": {strconv.FormatUint(f.cursor, 10)}, "limit": {strconv.Itoa(f.pageSize)}}
	data, err := f.call(ctx, f.room+".history", []byte(query.Encode()))
	if err != nil {
		return nil, err
	}
	var page historyPage
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, fmt.Errorf("history page: %w", err)
	}
	if len(page.Seqs) != len(page.Messages) {
		return nil, fmt.Errorf("room %s: the history reply has no seqs: the control plane is too old to follow", f.room)
	}
	return &page, nil
}

// call is a signed request that is sent again, freshly signed, when its reply was lost
// (a cut, a NATS restart, an expired JWT) or the control plane was unavailable (503):
// every request a follower makes only reads. Other service errors are the answer.
func (f *follower) call(ctx context.Context, suffix string, body []byte) (json.RawMessage, error) {
	for {
		reply, err := request(f.s.nc, f.s.user, f.s.prefix+".rooms."+suffix, body)
		var service *ServiceError
		switch {
		case err == nil:
			return reply.Data, nil
		case errors.As(err, &service) && service.Code < 500,
			errors.Is(err, nats.ErrConnectionClosed):
			return nil, err
		}
		if !sleep(ctx, retryPause) {
			return nil, ctx.Err()
		}
	}
}

// sleep waits d unless ctx ends first; false then.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
