package main

import (
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// noticeSuffix is where the control plane tells an identity that its rooms changed:
// `<inbox prefix>.unibus.notice`, below the inbox it may always subscribe to, so a notice
// reaches it before it holds the new room's permission (docs/protocol.md, "Notices").
const noticeSuffix = ".unibus.notice"

// Reconnect pacing: the control plane cuts connections and JWTs expire as a matter of
// course, so a reconnect is routine and should be quick; and it must never stop trying.
const (
	reconnectWait   = 100 * time.Millisecond
	reconnectJitter = 100 * time.Millisecond
	dialTimeout     = 2 * time.Second
)

// notice is the JSON body of a notice.
type notice struct {
	Event string `json:"event"` // "granted" or "revoked"
	Room  string `json:"room"`
}

// session is one identity's NATS connection, kept authorized for as long as it lives:
//
//   - the identity's nkey, and replies under _INBOX.<its key> (the trust boundary allows
//     no other inbox);
//   - reconnects for ever, quickly, and also after the server refused it twice in a row:
//     nats.go otherwise gives up for good after the same auth error twice on one server
//     (IgnoreAuthErrorAbort), which is what a reconnect during a NATS or control-plane
//     restart meets, when the auth callout has no responder yet;
//   - re-authorizes when its user JWT expires: nats-server then sends "User
//     Authentication Expired" and closes the connection, and nats.go reconnects, which
//     runs the auth callout again under the identity's current rooms;
//   - re-authorizes on a "granted" notice, so a room it was added to becomes usable.
//
// Errors are not printed: what matters (a refusal of one of its subjects) is delivered to
// the parts that act on it (errors()), not logged.
type session struct {
	nc     *nats.Conn
	user   nkeys.KeyPair
	public string // the identity's U… key: its member id
	prefix string // the control subject prefix

	wire        *trackingDialer
	reconnected *broadcast
	notices     chan notice
	failures    chan error

	mu            sync.Mutex
	reauthorizing bool
}

// connect opens the identity's session on natsURL.
func connect(natsURL string, user nkeys.KeyPair, prefix string) (*session, error) {
	public, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	s := &session{
		user:        user,
		public:      public,
		prefix:      prefix,
		wire:        &trackingDialer{},
		reconnected: newBroadcast(),
		notices:     make(chan notice, 64),
		failures:    make(chan error, 64),
	}
	s.nc, err = nats.Connect(natsURL,
		nats.Name("unibus-go-example-peer"),
		nats.Nkey(public, user.Sign),
		nats.CustomInboxPrefix(inboxPrefix(public)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitter),
		nats.IgnoreAuthErrorAbort(),
		nats.SetCustomDialer(s.wire),
		nats.ReconnectHandler(func(*nats.Conn) {
			s.mu.Lock()
			s.reauthorizing = false
			s.mu.Unlock()
			s.reconnected.fire()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			offer(s.failures, err)
		}),
	)
	if err != nil {
		return nil, err
	}
	if _, err := s.nc.Subscribe(inboxPrefix(public)+noticeSuffix, s.onNotice); err != nil {
		s.nc.Close()
		return nil, err
	}
	return s, nil
}

func inboxPrefix(public string) string { return "_INBOX." + public }

// onNotice re-authorizes on "granted" and hands every notice to whoever follows rooms.
// Only the control plane may publish below an identity's inbox, but a notice is still
// only a hint: a "revoked" is checked with a signed request before anything ends.
func (s *session) onNotice(m *nats.Msg) {
	var n notice
	if err := json.Unmarshal(m.Data, &n); err != nil {
		return
	}
	if n.Event == "granted" {
		s.reauthorize()
	}
	offer(s.notices, n)
}

// reauthorize makes the connection come back under the identity's current rooms. nats.go
// 1.22 has no ForceReconnect, so it closes the socket under the client, which then
// reconnects as after any cut, keeping its subscriptions. Several grants while one
// re-authorization is under way cost one reconnect.
func (s *session) reauthorize() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reauthorizing {
		return
	}
	s.reauthorizing = s.wire.drop()
}

// Close ends the session.
func (s *session) Close() { s.nc.Close() }

// trackingDialer dials like net.Dialer and remembers the current socket, so reauthorize
// can close it.
type trackingDialer struct {
	mu      sync.Mutex
	current net.Conn
}

func (d *trackingDialer) Dial(network, address string) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: dialTimeout}).Dial(network, address)
	if err == nil {
		d.mu.Lock()
		d.current = conn
		d.mu.Unlock()
	}
	return conn, err
}

// drop closes the current socket; false when there is none.
func (d *trackingDialer) drop() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current == nil {
		return false
	}
	_ = d.current.Close()
	d.current = nil
	return true
}

// broadcast wakes every waiter once per event: wait() returns a channel that closes at
// the next fire().
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

// offer sends v unless the channel is full: a callback of nats.go must never block.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
