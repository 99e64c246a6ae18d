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

// headerSequence is the header nats-server's stream republish stamps on the copy of each
// stored frame: its stream sequence.
const headerSequence = "Nats-Sequence"

// storedSuffix is appended to a room's subject for the republished copies of its frames.
const storedSuffix = ".stored"

// fromNow as the starting cursor: follow from the stream's end (frames stored from now on).
const fromNow = ^uint64(0)

const (
	// defaultLiveBuffer is how many live copies may wait while history is read or the
	// output is slow (-live-buffer). When it is full nats.go drops the newest and reports a
	// slow consumer; the follower then reads them from history (docs/protocol.md,
	// "Following a room", step 5). nats.go bounds a channel subscription by count only:
	// with frames near the largest a room takes (about 750 KiB at a 1 MiB max_payload) a
	// full buffer is about 3 GiB, so a follower of rooms with large frames sets it lower.
	defaultLiveBuffer = 4096
	// aheadFor is how long history is read again for a live copy's sequence it did not
	// reach. The server republishes a frame once its stream stored it, so history soon
	// reaches a stamp that is the server's (a clustered stream's new leader may answer
	// behind for a moment); one it never reaches is not the server's: a member can forge
	// one that nats.go reads as the server's (docs/protocol.md, "Forged headers"), so it
	// is only ever dropped. A gap is only what history says.
	aheadFor = 30 * time.Second
	// maxAheadPause bounds the pause between those reads.
	maxAheadPause = time.Second
	// settle is when one more read follows a reconnect's catch-up: in a cluster the
	// renewed subscription may reach the stream's leader after that read did.
	settle     = time.Second
	retryPause = 100 * time.Millisecond
	// maxRetryPause bounds the backoff of a read resent while the control plane is away.
	maxRetryPause = 2 * time.Second
)

// sink receives what a follower delivers, in stream order.
type sink interface {
	// frame is one stored frame and its stream sequence.
	frame(seq uint64, raw []byte) error
	// gap says frames first..last were stored but are no longer (the room's byte limit
	// dropped them, or an operator purged them): they will never be delivered.
	gap(first, last uint64) error
	// following says the follower listens live, after sequence `after`.
	following(stored string, after uint64)
	// reconnected says the connection came back (a cut, a NATS restart, an expired JWT,
	// a re-authorization); the frames stored meanwhile are read from history next.
	reconnected()
	// dropped says a live copy's sequence was dropped: history never reached it.
	dropped(stamp uint64, after time.Duration)
	// overflowed says live copies were dropped from a full buffer; history is read for them.
	overflowed()
}

// follower delivers every stored frame of one room exactly once, in stream order, after
// `cursor`, as docs/protocol.md ("Following a room") specifies: live copies from
// `<room subject>.stored` while they come in order, the room's history (`after=<cursor>`)
// whenever one is missing: at start, after each reconnect, when a copy's sequence jumps,
// on a "revoked" notice and when the server refuses the live subscription. Copies at or
// below the cursor are duplicates and dropped. The cursor is the last sequence handed on,
// a frame or the end of a gap. A revocation ends it with the control plane's 403.
type follower struct {
	s        *session
	room     string
	cursor   uint64 // fromNow until the first read
	pageSize int
	buffer   int // live copies held, at most
	out      sink
	// ahead is the highest sequence seen live that history had not reached when read;
	// recheck reads history again for it, every aheadPause, for aheadFor after aheadSince.
	ahead      uint64
	aheadSince time.Time
	aheadPause time.Duration
	recheck    *time.Timer
	// dropped is how many live copies nats.go had dropped when history was last read for them.
	dropped int
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
	var r struct {
		Subject string  `json:"subject"`
		Stream  *string `json:"stream"`
	}
	if err := json.Unmarshal(info, &r); err != nil {
		return fmt.Errorf("room object: %w", err)
	}
	if r.Stream == nil {
		return fmt.Errorf("room %s is ephemeral: it stores nothing to follow", f.room)
	}
	stored := r.Subject + storedSuffix
	live := make(chan *nats.Msg, f.buffer)
	sub, err := f.s.nc.ChanSubscribe(stored, live)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The server holds the subscription before the first read: whatever is stored after
	// that read arrives live.
	if err := f.s.nc.Flush(); err != nil {
		return err
	}

	reconnected := f.s.reconnected.wait()
	if f.cursor == fromNow {
		page, err := f.page(ctx, fromNow)
		if err != nil {
			return err
		}
		f.cursor = *page.StreamLastSeq
	}
	f.out.following(stored, f.cursor)
	f.recheck = time.NewTimer(time.Hour)
	f.recheck.Stop()
	defer f.recheck.Stop()
	if err := f.catchUp(ctx); err != nil {
		return err
	}
	settled := time.NewTimer(settle)
	settled.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-live:
			err = f.onStored(ctx, m)
		case <-reconnected:
			reconnected = f.s.reconnected.wait()
			f.out.reconnected()
			err = f.catchUp(ctx)
			settled.Reset(settle)
		case <-settled.C:
			err = f.catchUp(ctx)
		case <-f.recheck.C:
			err = f.catchUp(ctx)
		case n := <-f.s.notices:
			if n.Event == "revoked" && n.Room == f.room {
				err = f.catchUp(ctx) // removed (a 403), or a forged notice
			}
		case failure := <-f.s.failures:
			switch {
			case errors.Is(failure, nats.ErrSlowConsumer):
				// The report does not say whose: only the live subscription's drops matter.
				if dropped, _ := sub.Dropped(); dropped > f.dropped {
					f.out.overflowed()
					err = f.catchUpDropped(ctx, sub, live)
				}
			case refuses(failure, stored):
				err = f.catchUp(ctx)
			}
		}
		if err != nil {
			return err
		}
	}
}

// catchUpDropped reads history for the copies nats.go dropped from the full buffer. The
// copies still held are stored frames that the read covers, so they are emptied first:
// the next copy then fits, which ends nats.go's slow-consumer episode (it reports once
// per episode), and a copy dropped during the read (no second report) is read by one
// more pass.
func (f *follower) catchUpDropped(ctx context.Context, sub *nats.Subscription, live chan *nats.Msg) error {
	for {
		for len(live) > 0 {
			<-live
		}
		f.dropped, _ = sub.Dropped()
		if err := f.catchUp(ctx); err != nil {
			return err
		}
		if dropped, _ := sub.Dropped(); dropped == f.dropped {
			return nil
		}
	}
}

// onStored handles one copy from the stored subject.
func (f *follower) onStored(ctx context.Context, m *nats.Msg) error {
	seq, ok := storedSequence(m)
	switch {
	case ok && seq <= f.cursor:
		return nil // handed on already
	case ok && seq == f.cursor+1:
		return f.deliver(seq, m.Data)
	}
	// Frames missed before this one (or a sequence it cannot read): history has them,
	// this one included. The live copy is dropped either way: history is the authority on
	// what was stored, and what it does not hold yet is looked for again (reckonAhead).
	if err := f.catchUp(ctx); err != nil {
		return err
	}
	if ok && seq > f.cursor && seq > f.ahead {
		if f.ahead == 0 {
			f.aheadSince, f.aheadPause = time.Now(), retryPause
			f.recheck.Reset(f.aheadPause)
		}
		f.ahead = seq
	}
	return nil
}

// reckonAhead runs after every catch-up: history reached the sequence seen live, or it is
// read again a little later, or after aheadFor the live copy is dropped for good.
func (f *follower) reckonAhead() {
	switch {
	case f.ahead == 0:
	case f.cursor >= f.ahead:
		f.ahead = 0
		f.recheck.Stop()
	case time.Since(f.aheadSince) >= aheadFor:
		f.out.dropped(f.ahead, aheadFor)
		f.ahead = 0
	default:
		if f.aheadPause *= 2; f.aheadPause > maxAheadPause {
			f.aheadPause = maxAheadPause
		}
		f.recheck.Reset(f.aheadPause)
	}
}

// storedSequence is the stream sequence nats-server stamped on a republished copy. The
// server appends its headers after any the publisher sent, so a publisher that forged
// Nats-Sequence on its own frame only adds an earlier value: the last one is the server's
// (nats.go's Header.Get would return the forged one).
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

// catchUp reads history after the cursor until the stream's end; what the stream no
// longer holds is reported as a gap. Only history says what is gone, never a live copy.
func (f *follower) catchUp(ctx context.Context) error {
	for {
		page, err := f.page(ctx, f.cursor)
		if err != nil {
			return err
		}
		end := *page.StreamLastSeq
		if end < f.cursor {
			return fmt.Errorf("room %s's stream ends at sequence %d, below this follower's cursor %d: "+
				"it is not the stream the cursor was taken from (the room was deleted and made again, "+
				"or JetStream was restored)", f.room, end, f.cursor)
		}
		for i, raw := range page.Messages {
			if err := f.deliver(page.Seqs[i], raw); err != nil {
				return err
			}
		}
		windowEnd := end
		if page.LastSeq != nil {
			windowEnd = *page.LastSeq
		}
		if windowEnd > f.cursor { // the window's last sequences are gone
			if err := f.skip(windowEnd); err != nil {
				return err
			}
		}
		if f.cursor >= end {
			f.reckonAhead()
			return nil
		}
	}
}

// deliver hands out the frame at seq, after the gap before it if there is one.
func (f *follower) deliver(seq uint64, raw []byte) error {
	if seq <= f.cursor {
		return nil
	}
	if seq > f.cursor+1 {
		if err := f.skip(seq - 1); err != nil {
			return err
		}
	}
	if err := f.out.frame(seq, raw); err != nil {
		return err
	}
	f.cursor = seq
	return nil
}

// skip reports the sequences after the cursor up to last as a gap, and moves past them.
func (f *follower) skip(last uint64) error {
	if err := f.out.gap(f.cursor+1, last); err != nil {
		return err
	}
	f.cursor = last
	return nil
}

// page is one history page after `after`, oldest first, with each frame's sequence and
// where the stream ends.
func (f *follower) page(ctx context.Context, after uint64) (*historyPage, error) {
	query := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(f.pageSize)}}
	data, err := f.call(ctx, f.room+".history", []byte(query.Encode()))
	if err != nil {
		return nil, err
	}
	var page historyPage
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, fmt.Errorf("history page: %w", err)
	}
	if page.StreamLastSeq == nil || len(page.Seqs) != len(page.Messages) {
		return nil, fmt.Errorf("room %s: the control plane is older than history `after`: it cannot be followed", f.room)
	}
	return &page, nil
}

// call is a signed request that is sent again, freshly signed, when its reply was lost
// (a cut, a NATS restart, an expired JWT) or the control plane was unavailable (503):
// every request a follower makes only reads. Other service errors are the answer.
func (f *follower) call(ctx context.Context, suffix string, body []byte) (json.RawMessage, error) {
	pause := retryPause
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
		if !sleep(ctx, pause) {
			return nil, ctx.Err()
		}
		if pause < maxRetryPause {
			pause *= 2
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
