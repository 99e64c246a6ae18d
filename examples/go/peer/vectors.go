package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// requestVector is one case of tests/vectors/request_signatures.json.
type requestVector struct {
	Seed         string            `json:"seed"`
	Subject      string            `json:"subject"`
	TimestampMS  int64             `json:"timestamp_ms"`
	Nonce        string            `json:"nonce"`
	BodyB64      string            `json:"body_b64"`
	SigningInput string            `json:"signing_input"`
	Headers      map[string]string `json:"headers"`
}

// frameVector is one case of tests/vectors/frames.json. The body is given as sent (the
// ciphertext in an encrypted room), so encoding and signing are checked without a cipher.
type frameVector struct {
	Name         string `json:"name"`
	SenderSeed   string `json:"sender_seed"`
	RoomID       string `json:"room_id"`
	SigningInput string `json:"signing_input"`
	FrameHex     string `json:"frame_hex"`
	Fields       struct {
		From     string `json:"from"`
		TS       int64  `json:"ts"`
		ID       string `json:"id"`
		Epoch    uint64 `json:"epoch"`
		NonceHex string `json:"nonce_hex"`
		BodyHex  string `json:"body_hex"`
		SigHex   string `json:"sig_hex"`
	} `json:"fields"`
	RejectedInRoom map[string]string `json:"rejected_in_room"`
}

// vectorResult is one output line of -vectors.
type vectorResult struct {
	File       string   `json:"file"`
	Case       string   `json:"case"`
	OK         bool     `json:"ok"`
	Mismatches []string `json:"mismatches,omitempty"`
}

// checkVectors reproduces every request-signature and frame vector in dir byte for byte,
// prints one line per case, and reports whether all of them matched.
func checkVectors(dir string, out io.Writer) (bool, error) {
	var requests []requestVector
	if err := readJSON(filepath.Join(dir, "request_signatures.json"), &requests); err != nil {
		return false, err
	}
	var frames []frameVector
	if err := readJSON(filepath.Join(dir, "frames.json"), &frames); err != nil {
		return false, err
	}
	var results []vectorResult
	for _, v := range requests {
		results = append(results, vectorResult{File: "request_signatures.json", Case: v.Subject, Mismatches: checkRequest(v)})
	}
	for _, v := range frames {
		results = append(results, vectorResult{File: "frames.json", Case: v.Name, Mismatches: checkFrame(v)})
	}
	allOK, encoder := true, json.NewEncoder(out)
	for _, r := range results {
		r.OK = len(r.Mismatches) == 0
		allOK = allOK && r.OK
		if err := encoder.Encode(r); err != nil {
			return false, err
		}
	}
	return allOK, nil
}

func checkRequest(v requestVector) []string {
	var m mismatches
	user, err := nkeys.FromSeed([]byte(v.Seed))
	if err != nil {
		return m.add("seed: %v", err)
	}
	body, err := base64.StdEncoding.DecodeString(v.BodyB64)
	if err != nil {
		return m.add("body_b64: %v", err)
	}
	m.same("signing_input", signingInput(v.Subject, v.TimestampMS, v.Nonce, body), v.SigningInput)
	header, err := signedHeaders(user, v.Subject, v.TimestampMS, v.Nonce, body)
	if err != nil {
		return m.add("sign: %v", err)
	}
	if len(header) != len(v.Headers) {
		m.add("%d headers, the vector has %d", len(header), len(v.Headers))
	}
	for name, want := range v.Headers {
		m.same(name, header.Get(name), want)
	}
	return m
}

func checkFrame(v frameVector) []string {
	var m mismatches
	sender, err := nkeys.FromSeed([]byte(v.SenderSeed))
	if err != nil {
		return m.add("sender_seed: %v", err)
	}
	nonce, errNonce := hex.DecodeString(v.Fields.NonceHex)
	body, errBody := hex.DecodeString(v.Fields.BodyHex)
	if errNonce != nil || errBody != nil {
		return m.add("fields: bad hex")
	}
	f := &frame{From: v.Fields.From, TS: v.Fields.TS, ID: v.Fields.ID, Epoch: v.Fields.Epoch, Nonce: nonce, Body: body}
	m.same("signing_input", f.signingInput(v.RoomID), v.SigningInput)
	if err := f.sign(sender, v.RoomID); err != nil {
		return m.add("sign: %v", err)
	}
	m.same("sig_hex", hex.EncodeToString(f.Sig), v.Fields.SigHex)
	m.same("frame_hex", hex.EncodeToString(f.encode()), v.FrameHex)
	for room, reason := range v.RejectedInRoom {
		// The only rejection a sender's side can reproduce: the signature binds the room.
		if reason != "bad-signature" {
			continue
		}
		if err := sender.Verify([]byte(f.signingInput(room)), f.Sig); err == nil {
			m.add("the signature also verifies in room %q", room)
		}
	}
	return m
}

// mismatches collects what differs from a vector.
type mismatches []string

func (m *mismatches) add(format string, args ...any) []string {
	*m = append(*m, fmt.Sprintf(format, args...))
	return *m
}

func (m *mismatches) same(what, got, want string) {
	if got != want {
		m.add("%s: got %q, want %q", what, got, want)
	}
}

func readJSON(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
