package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
)

// frame is what a peer publishes on a room's subject: docs/protocol.md, "Frames". This
// example sends unencrypted frames (epoch 0, no nonce, the plaintext as body); an
// encrypted room's body is crypto_secretbox of it under the room key, signed the same way.
type frame struct {
	From  string
	TS    int64
	ID    string
	Epoch uint64
	Nonce []byte
	Body  []byte
	Sig   []byte
}

// newPlainFrame signs `text` for the unencrypted room `room` as `sender`.
func newPlainFrame(sender nkeys.KeyPair, room string, tsMS int64, text []byte) (*frame, error) {
	random := make([]byte, 16)
	if _, err := rand.Read(random); err != nil {
		return nil, err
	}
	from, err := sender.PublicKey()
	if err != nil {
		return nil, err
	}
	f := &frame{From: from, TS: tsMS, ID: base64.RawURLEncoding.EncodeToString(random), Nonce: []byte{}, Body: text}
	return f, f.sign(sender, room)
}

// signingInput binds the frame to its room: the room id is not in the frame, so a frame
// replayed into another room fails verification.
func (f *frame) signingInput(room string) string {
	digest := sha256.Sum256(f.Body)
	return strings.Join([]string{
		"unibus-frame-v1",
		room,
		f.From,
		strconv.FormatInt(f.TS, 10),
		f.ID,
		strconv.FormatUint(f.Epoch, 10),
		hex.EncodeToString(f.Nonce),
		hex.EncodeToString(digest[:]),
	}, "\n")
}

func (f *frame) sign(sender nkeys.KeyPair, room string) (err error) {
	f.Sig, err = sender.Sign([]byte(f.signingInput(room)))
	return err
}

// encode is the msgpack map of protocol.md: these keys in this order, integers in their
// smallest form, strings as str and byte strings as bin. The format is small and fixed,
// so it is written here rather than pulled in from a msgpack library.
func (f *frame) encode() []byte {
	out := []byte{0x88} // a map of 8 entries
	out = appendUint(appendStr(out, "v"), 1)
	out = appendStr(appendStr(out, "from"), f.From)
	out = appendUint(appendStr(out, "ts"), uint64(f.TS))
	out = appendStr(appendStr(out, "id"), f.ID)
	out = appendUint(appendStr(out, "epoch"), f.Epoch)
	out = appendBin(appendStr(out, "nonce"), f.Nonce)
	out = appendBin(appendStr(out, "body"), f.Body)
	out = appendBin(appendStr(out, "sig"), f.Sig)
	return out
}

func appendUint(out []byte, n uint64) []byte {
	switch {
	case n < 1<<7:
		return append(out, byte(n)) // positive fixint
	case n < 1<<8:
		return append(out, 0xcc, byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(out, 0xcd), uint16(n))
	case n < 1<<32:
		return binary.BigEndian.AppendUint32(append(out, 0xce), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(out, 0xcf), n)
	}
}

func appendStr(out []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		out = append(out, 0xa0|byte(n)) // fixstr
	case n < 1<<8:
		out = append(out, 0xd9, byte(n))
	case n < 1<<16:
		out = binary.BigEndian.AppendUint16(append(out, 0xda), uint16(n))
	default:
		out = binary.BigEndian.AppendUint32(append(out, 0xdb), uint32(n))
	}
	return append(out, s...)
}

func appendBin(out []byte, b []byte) []byte {
	switch n := len(b); {
	case n < 1<<8:
		out = append(out, 0xc4, byte(n))
	case n < 1<<16:
		out = binary.BigEndian.AppendUint16(append(out, 0xc5), uint16(n))
	default:
		out = binary.BigEndian.AppendUint32(append(out, 0xc6), uint32(n))
	}
	return append(out, b...)
}
