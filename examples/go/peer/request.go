package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The signed-request headers of docs/protocol.md, "Signed requests".
const (
	headerSigner    = "Unibus-Signer"
	headerTimestamp = "Unibus-Timestamp"
	headerNonce     = "Unibus-Nonce"
	headerSignature = "Unibus-Signature"
	// headerReconnect on a reply says the control plane is about to cut this identity's
	// connections so that they come back with the permissions of its new rooms.
	headerReconnect = "Unibus-Reconnect"
	// The NATS services error convention (ADR-32), which every error reply follows.
	headerErrorCode = "Nats-Service-Error-Code"
	headerError     = "Nats-Service-Error"
)

// requestTimeout bounds each control request.
const requestTimeout = 5 * time.Second

// ServiceError is an error reply of the control plane: an HTTP-like code and its message.
type ServiceError struct {
	Subject string `json:"subject"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Subject, e.Code, e.Message)
}

// signingInput is the string a request signature covers: the subject and the body's hash
// are in it, so a captured request can move to no other room or endpoint, nor change body.
func signingInput(subject string, timestampMS int64, nonce string, body []byte) string {
	digest := sha256.Sum256(body)
	return strings.Join([]string{
		"unibus-request-v1",
		subject,
		strconv.FormatInt(timestampMS, 10),
		nonce,
		hex.EncodeToString(digest[:]),
	}, "\n")
}

// signedHeaders are the four headers that authenticate one request as `user`.
func signedHeaders(user nkeys.KeyPair, subject string, timestampMS int64, nonce string, body []byte) (nats.Header, error) {
	signer, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	signature, err := user.Sign([]byte(signingInput(subject, timestampMS, nonce, body)))
	if err != nil {
		return nil, err
	}
	header := nats.Header{}
	header.Set(headerSigner, signer)
	header.Set(headerTimestamp, strconv.FormatInt(timestampMS, 10))
	header.Set(headerNonce, nonce)
	header.Set(headerSignature, base64.RawURLEncoding.EncodeToString(signature))
	return header, nil
}

// newNonce is fresh per request: the service refuses a (signer, nonce) pair it has seen.
func newNonce() (string, error) {
	random := make([]byte, 16)
	if _, err := rand.Read(random); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(random), nil
}

// request sends one signed control request and returns the reply, or a *ServiceError when
// the service answered with an error (no responders counts as 503, as protocol.md says).
func request(nc *nats.Conn, user nkeys.KeyPair, subject string, body []byte) (*nats.Msg, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	header, err := signedHeaders(user, subject, time.Now().UnixMilli(), nonce, body)
	if err != nil {
		return nil, err
	}
	reply, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: header, Data: body}, requestTimeout)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, &ServiceError{Subject: subject, Code: 503, Message: "no control plane is answering"}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := reply.Header.Get(headerErrorCode); code != "" {
		n, err := strconv.Atoi(code)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed %s %q", subject, headerErrorCode, code)
		}
		return nil, &ServiceError{Subject: subject, Code: n, Message: reply.Header.Get(headerError)}
	}
	return reply, nil
}
