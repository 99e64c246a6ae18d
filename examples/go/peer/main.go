// Command peer is a small, complete unibus peer in Go: a starting point for a Go team
// writing its own client against the control plane, and the proof (tests/test_go_example.py)
// that the wire contract in docs/protocol.md is enough to write one.
//
// As an identity (an nkey seed file, `unibus keygen` makes one) it
//
//  1. connects under the trust boundary and stays authorized (connect.go: the identity's
//     nkey, replies under _INBOX.<its key>, reconnects for ever, re-authorization when its
//     JWT expires or a room is granted);
//  2. creates a persisted (`matrix`) room with a signed `rooms.create`, then re-authorizes
//     so the connection gains the new room's subject;
//  3. publishes -count signed, unencrypted frames over core NATS on the room's subject;
//  4. reads the room's whole history with signed `history` requests, -page frames at a time,
//     paging back with `before=<first_seq>`, until every frame it sent is stored;
//
// and prints one JSON object: its identity, the room, the frames it published and the
// history it read (base64, oldest first). With -create=false it uses an existing room (it
// must be a member); with both -create=false and -count=0 it only reads the history, and
// its "room" is null. With -vectors DIR it checks its signing and frame encoding against
// tests/vectors/ instead and prints one line per case.
//
// With -follow it follows the room instead (follow.go, cursor.go): one JSON line per stored
// frame, {"seq": N, "frame": "<base64>"}, each exactly once and in stream order across
// cuts, reconnects, NATS restarts, JWT expiries and its own restarts (-cursor FILE keeps
// its place), {"gap": {"first": A, "last": B}} for frames the room no longer stores, until
// SIGINT/SIGTERM (exit 0) or its removal from the room (exit 3, the 403).
//
// Exit status: 0 done; 1 failed (connection, files, timeout); 2 bad usage; 3 the control
// plane answered with an error, printed on stderr and as {"error": {...}} on stdout.
//
// Build it offline in GOPATH mode against Debian's packages (golang-go,
// golang-github-nats-io-go-nats-dev), from the repository root:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o peer ./examples/go/peer
//	./peer -url nats://127.0.0.1:4222 -seed alice.seed -room go-lobby -text hello -count 3
//	./peer -url nats://127.0.0.1:4222 -seed bob.seed -room go-lobby -follow -after 0 -cursor bob.cursor
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nkeys"
)

// Exit statuses.
const (
	exitFailed       = 1
	exitUsage        = 2
	exitServiceError = 3
)

// room is the part of the control plane's room object this peer needs.
type room struct {
	Subject   string `json:"subject"`
	Encrypted bool   `json:"encrypted"`
}

// historyPage is the JSON reply of `<prefix>.rooms.<id>.history`.
type historyPage struct {
	Messages [][]byte `json:"messages"` // encoding/json decodes base64 into []byte
	FirstSeq uint64   `json:"first_seq"`
	// With `after` (follow.go): each frame's stream sequence, the window's last
	// sequence (absent for an empty window) and where the stream ends.
	Seqs          []uint64 `json:"seqs"`
	LastSeq       *uint64  `json:"last_seq"`
	StreamLastSeq *uint64  `json:"stream_last_seq"`
}

// report is what the peer prints when it is done.
type report struct {
	Identity  string          `json:"identity"`
	Room      json.RawMessage `json:"room"`
	Published [][]byte        `json:"published"`
	History   [][]byte        `json:"history"`
	Pages     int             `json:"pages"`
}

// peer is one identity's session, used for one run.
type peer struct {
	*session
}

func main() {
	natsURL := flag.String("url", "nats://127.0.0.1:4222", "NATS URL of the unibus deployment")
	seedFile := flag.String("seed", "", "file holding the identity's nkey seed (SU…)")
	roomID := flag.String("room", "", "room id: 1-64 characters of [A-Za-z0-9_-]")
	create := flag.Bool("create", true, "create the room (false: use an existing room the identity is in)")
	text := flag.String("text", "hello from go", "message text; with -count > 1 each frame gets its number appended")
	count := flag.Int("count", 1, "frames to publish")
	pageSize := flag.Int("page", 100, "frames per history page")
	wait := flag.Duration("wait", 10*time.Second, "how long to wait for the published frames to be stored")
	prefix := flag.String("prefix", "$UNIBUS.CTL", "control subject prefix (UNIBUS_API_PREFIX)")
	vectors := flag.String("vectors", "", "check signing and frames against this tests/vectors directory, then exit")
	follow := flag.Bool("follow", false, "follow the room: print every stored frame once, in order, until interrupted")
	after := flag.Int64("after", -1, "with -follow: start after this stream sequence, 0 for the whole room (default: the -cursor file's, else from now on)")
	cursorFile := flag.String("cursor", "", "with -follow: keep the last frame's sequence in this file and resume from it")
	liveBuffer := flag.Int("live-buffer", defaultLiveBuffer, "with -follow: live copies held while busy; past it they are read from history")
	flag.Parse()

	if *vectors != "" {
		ok, err := checkVectors(*vectors, os.Stdout)
		fail(err)
		if !ok {
			os.Exit(exitFailed)
		}
		return
	}
	if *seedFile == "" || *roomID == "" || *count < 0 || *pageSize < 1 || *liveBuffer < 1 {
		flag.Usage()
		os.Exit(exitUsage)
	}

	user, err := readIdentity(*seedFile)
	fail(err)
	s, err := connect(*natsURL, user, *prefix)
	fail(err)
	defer s.Close()
	if *follow {
		fail(followRoom(s, *roomID, *after, *cursorFile, *pageSize, *liveBuffer))
		return
	}
	out, err := (&peer{s}).run(*roomID, *create, *text, *count, *pageSize, *wait)
	fail(err)
	fail(json.NewEncoder(os.Stdout).Encode(out))
}

// readIdentity is the nkey in seedFile.
func readIdentity(seedFile string) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		return nil, err
	}
	user, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", seedFile, err)
	}
	return user, nil
}

func (p *peer) run(roomID string, create bool, text string, count, pageSize int, wait time.Duration) (*report, error) {
	out := &report{Identity: p.public, Published: [][]byte{}}
	var err error
	switch {
	case create:
		out.Room, err = p.createRoom(roomID)
	case count > 0: // the room's subject is needed only to publish
		out.Room, err = p.call(roomID+".info", nil)
	}
	if err != nil {
		return nil, err
	}
	var r room
	if out.Room != nil {
		if err := json.Unmarshal(out.Room, &r); err != nil {
			return nil, fmt.Errorf("room object: %w", err)
		}
	}
	if count > 0 && r.Encrypted {
		return nil, fmt.Errorf("room %s is encrypted: this example sends unencrypted frames only", roomID)
	}

	for i := 1; i <= count; i++ {
		body := text
		if count > 1 {
			body = fmt.Sprintf("%s %d", text, i)
		}
		f, err := newPlainFrame(p.user, roomID, time.Now().UnixMilli(), []byte(body))
		if err != nil {
			return nil, err
		}
		raw := f.encode()
		// Core NATS, as every peer publishes: the room's stream captures it, and sends no ack.
		if err := p.nc.Publish(r.Subject, raw); err != nil {
			return nil, err
		}
		out.Published = append(out.Published, raw)
	}
	if err := p.nc.Flush(); err != nil {
		return nil, err
	}

	// Storage is asynchronous: read the history until it holds every frame sent.
	deadline := time.Now().Add(wait)
	for {
		out.History, out.Pages, err = p.history(roomID, pageSize)
		if err != nil {
			return nil, err
		}
		if holdsAll(out.History, out.Published) {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("room %s: the frames published were not all in its history after %s", roomID, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createRoom creates a persisted, unencrypted room owned by this identity. The reply
// carries Unibus-Reconnect: this connection's grant predates the room, so a publish to it
// would be refused until the identity re-authorizes, which it does here and waits for.
func (p *peer) createRoom(roomID string) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]string{"id": roomID, "mode": "matrix"})
	reply, err := request(p.nc, p.user, p.prefix+".rooms.create", body)
	if err != nil {
		return nil, err
	}
	if reply.Header.Get(headerReconnect) == "true" {
		// Any reconnect from now on authenticates after the room was written.
		reconnected := p.reconnected.wait()
		p.reauthorize()
		select {
		case <-reconnected:
		case <-time.After(10 * time.Second):
			return nil, errors.New("not re-authorized after the room was created")
		}
	}
	return reply.Data, nil
}

// call is a signed request to `<prefix>.rooms.<suffix>`; the reply's body.
func (p *peer) call(suffix string, body []byte) (json.RawMessage, error) {
	reply, err := request(p.nc, p.user, p.prefix+".rooms."+suffix, body)
	if err != nil {
		return nil, err
	}
	return reply.Data, nil
}

// history reads every stored frame of the room, oldest first. Each page is a window of
// sequences ending before `before`; its first_seq is the next `before`, and a first_seq of
// 1 (or none: an empty window) means nothing is older.
func (p *peer) history(roomID string, pageSize int) (frames [][]byte, pages int, err error) {
	query := url.Values{"limit": {strconv.Itoa(pageSize)}}
	frames = [][]byte{}
	for {
		// The body is the query string, and the signature covers its exact bytes.
		data, err := p.call(roomID+".history", []byte(query.Encode()))
		if err != nil {
			return nil, pages, err
		}
		var page historyPage
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, pages, fmt.Errorf("history page: %w", err)
		}
		pages++
		frames = append(page.Messages, frames...)
		if page.FirstSeq <= 1 {
			return frames, pages, nil
		}
		before := strconv.FormatUint(page.FirstSeq, 10)
		if query.Get("before") == before {
			return nil, pages, fmt.Errorf("history did not move back from sequence %s", before)
		}
		query.Set("before", before)
	}
}

// holdsAll reports whether every frame of `sent` is in `stored`.
func holdsAll(stored, sent [][]byte) bool {
	have := make(map[string]bool, len(stored))
	for _, f := range stored {
		have[string(f)] = true
	}
	for _, f := range sent {
		if !have[string(f)] {
			return false
		}
	}
	return true
}

// fail ends the program on err: a service error with its code (exit 3), anything else 1.
func fail(err error) {
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "peer:", err)
	var service *ServiceError
	if errors.As(err, &service) {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]*ServiceError{"error": service})
		os.Exit(exitServiceError)
	}
	os.Exit(exitFailed)
}
