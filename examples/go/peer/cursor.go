package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// followRoom is -follow: it prints one JSON line per stored frame of the room,
// {"seq": N, "frame": "<base64>"}, and {"gap": {"first": A, "last": B}} where retention
// removed frames before they were read, until SIGINT or SIGTERM (exit 0) or until the
// room can no longer be read (exit 3 with the 403 or 404). Reconnects are noted on stderr.
//
// With a cursor file the sequence of the last frame printed (or the end of a gap) is kept
// there, written after its line, and a restart without -after resumes after it: stopped
// by a signal, nothing twice and nothing lost. Killed between a line and its cursor write,
// it prints that line again after a restart; the "seq" in each line lets a reader drop it.
func followRoom(s *session, roomID string, after int64, cursorFile string, pageSize, buffer int) error {
	start := fromNow
	switch {
	case after >= 0:
		start = uint64(after)
	case cursorFile != "":
		kept, found, err := readCursor(cursorFile)
		if err != nil {
			return err
		}
		if found {
			start = kept
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := &lines{out: json.NewEncoder(os.Stdout), notes: os.Stderr, cursorFile: cursorFile}
	f := &follower{s: s, room: roomID, cursor: start, pageSize: pageSize, buffer: buffer, out: out}
	return f.follow(ctx)
}

// lines is the sink of -follow.
type lines struct {
	out        *json.Encoder
	notes      io.Writer
	cursorFile string
}

func (l *lines) frame(seq uint64, raw []byte) error {
	return l.print(seq, map[string]any{"seq": seq, "frame": raw})
}

func (l *lines) gap(first, last uint64) error {
	fmt.Fprintf(l.notes, "peer: frames %d-%d are no longer stored\n", first, last)
	return l.print(last, map[string]any{"gap": map[string]uint64{"first": first, "last": last}})
}

// print writes one line, then keeps `cursor` as the last sequence handed on.
func (l *lines) print(cursor uint64, line map[string]any) error {
	if err := l.out.Encode(line); err != nil {
		return err
	}
	if l.cursorFile == "" {
		return nil
	}
	return writeCursor(l.cursorFile, cursor)
}

func (l *lines) following(stored string, after uint64) {
	fmt.Fprintf(l.notes, "peer: listening on %s after sequence %d\n", stored, after)
}

func (l *lines) reconnected() {
	fmt.Fprintln(l.notes, "peer: reconnected; reading what was missed from history")
}

func (l *lines) dropped(stamp uint64, after time.Duration) {
	fmt.Fprintf(l.notes, "peer: dropped a live copy stamped %d, which history did not reach in %s\n", stamp, after)
}

func (l *lines) overflowed() {
	fmt.Fprintln(l.notes, "peer: live copies dropped while busy: reading them from history")
}

// readCursor is the sequence kept in path; found is false when there is no file yet.
func readCursor(path string) (seq uint64, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	seq, err = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: not a stream sequence: %w", path, err)
	}
	return seq, true, nil
}

// writeCursor replaces path's content with seq at once (a new file renamed over it), so
// a crash leaves the old cursor or the new one, never a torn one.
func writeCursor(path string, seq uint64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cursor-*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(strconv.FormatUint(seq, 10) + "\n")
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
