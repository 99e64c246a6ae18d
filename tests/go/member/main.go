// Command member is a room member's own Go NATS client, probing what the trust boundary
// (deploy/nats/boundary.conf and the control plane's auth callout) lets it do to its
// room's JetStream stream.
//
// It exists because the callout's grants (service/unibus/callout/permissions.py) are
// written for what the Go peer sends, and only a real nats.go client proves that its
// reads pass and its stream changes are refused. tests/test_go_peer.py builds it in
// GOPATH mode against Debian's golang-github-nats-io-go-nats-dev (nats.go 1.22, which has
// no `jetstream` package, so the legacy nc.JetStream() API stands in for the Go peer's
// jetstream.New(nc) calls) and asserts the table it prints.
//
// Usage:
//
//	member -url nats://127.0.0.1:4222 -seed alice.seed -room vault -other other
//
// It connects with the identity's nkey and the inbox prefix `_INBOX.<public key>` (the
// only inbox the boundary lets a member subscribe to), runs a fixed list of operations
// and prints one JSON line per operation: {"op": "...", "ok": true|false, "error": "..."}.
// `ok` means the call succeeded and the server reported no permissions violation while it
// ran; a refused request never gets a reply, so the violation the server sends (which
// nats.go delivers to the async error handler) ends the operation early instead of its
// timeout, and its text is part of `error`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// opTimeout bounds each operation: a refusal usually ends it much sooner.
const opTimeout = 1500 * time.Millisecond

// result is one output line.
type result struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// probe runs operations one at a time and collects the violations reported during each.
type probe struct {
	nc  *nats.Conn
	js  nats.JetStreamContext
	out *json.Encoder

	mu         sync.Mutex
	cancel     context.CancelFunc
	violations []string
}

// onError is the connection's async error handler.
func (p *probe) onError(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.violations = append(p.violations, err.Error())
	if strings.Contains(strings.ToLower(err.Error()), nats.PERMISSIONS_ERR) && p.cancel != nil {
		p.cancel()
	}
}

// run performs one operation with its own deadline and prints its line.
func (p *probe) run(op string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	p.mu.Lock()
	p.cancel, p.violations = cancel, nil
	p.mu.Unlock()

	err := fn(ctx)
	// A PING/PONG round trip: the server's -ERR for anything this op sent arrives first.
	_ = p.nc.FlushTimeout(opTimeout)
	time.Sleep(20 * time.Millisecond) // the async error handler runs on its own goroutine

	p.mu.Lock()
	violations := p.violations
	p.cancel, p.violations = nil, nil
	p.mu.Unlock()
	cancel()

	var parts []string
	if err != nil {
		parts = append(parts, err.Error())
	}
	parts = append(parts, violations...)
	_ = p.out.Encode(result{Op: op, OK: err == nil && len(violations) == 0, Error: strings.Join(parts, "; ")})
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	seedFile := flag.String("seed", "", "file holding the member's nkey seed (SU...)")
	room := flag.String("room", "", "a persisted room the member is in")
	other := flag.String("other", "", "a persisted room the member is not in")
	flag.Parse()
	if *seedFile == "" || *room == "" || *other == "" {
		flag.Usage()
		os.Exit(2)
	}

	seed, err := os.ReadFile(*seedFile)
	fatal(err)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	fatal(err)
	pub, err := kp.PublicKey()
	fatal(err)

	p := &probe{out: json.NewEncoder(os.Stdout)}
	p.nc, err = nats.Connect(*url,
		nats.Name("unibus-go-member-probe"),
		nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix("_INBOX."+pub),
		nats.ErrorHandler(p.onError),
		nats.Timeout(5*time.Second),
	)
	fatal(err)
	defer p.nc.Close()
	p.js, err = p.nc.JetStream(nats.MaxWait(opTimeout))
	fatal(err)

	stream := "UNIBUS_" + *room
	subject := "unibus.room." + *room
	durable := "go-member-durable"

	p.run("stream_info", func(ctx context.Context) error {
		_, err := p.js.StreamInfo(stream, nats.Context(ctx))
		return err
	})

	p.run("get_msg_1", func(ctx context.Context) error {
		// Direct get only if the stream allows it: the service does not set allow_direct.
		opts := []nats.JSOpt{nats.Context(ctx)}
		if info, err := p.js.StreamInfo(stream, nats.Context(ctx)); err != nil {
			return err
		} else if info.Config.AllowDirect {
			opts = append(opts, nats.DirectGet())
		}
		msg, err := p.js.GetMsg(stream, 1, opts...)
		if err == nil && msg.Subject != subject {
			err = fmt.Errorf("message 1 is on %q", msg.Subject)
		}
		return err
	})

	p.run("ordered_consumer_next", func(ctx context.Context) error {
		sub, err := p.js.SubscribeSync(subject, nats.BindStream(stream), nats.OrderedConsumer(),
			nats.DeliverAll(), nats.Context(ctx))
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})

	p.run("ephemeral_pull_fetch", func(ctx context.Context) error {
		sub, err := p.js.PullSubscribe(subject, "", nats.BindStream(stream), nats.Context(ctx))
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		msgs, err := sub.Fetch(1, nats.Context(ctx))
		if err == nil {
			err = msgs[0].AckSync(nats.Context(ctx))
		}
		return err
	})

	p.run("durable_pull_fetch_delete", func(ctx context.Context) error {
		_, err := p.js.AddConsumer(stream, &nats.ConsumerConfig{
			Durable: durable, AckPolicy: nats.AckExplicitPolicy, DeliverPolicy: nats.DeliverAllPolicy,
		}, nats.Context(ctx))
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		// Bound, so the library neither creates nor deletes it: the explicit delete below does.
		sub, err := p.js.PullSubscribe(subject, durable, nats.Bind(stream, durable), nats.Context(ctx))
		if err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		msgs, err := sub.Fetch(1, nats.Context(ctx))
		if err == nil {
			err = msgs[0].AckSync(nats.Context(ctx))
		}
		_ = sub.Unsubscribe()
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		if err := p.js.DeleteConsumer(stream, durable, nats.Context(ctx)); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		return nil
	})

	p.run("create_or_update_stream", func(ctx context.Context) error {
		// The Go peer's ensure (pkg/client/persist.go), and jetstream.CreateOrUpdateStream's
		// logic: an update first, a create only if the update says the stream is not found.
		cfg := &nats.StreamConfig{
			Name:      stream,
			Subjects:  []string{subject},
			Retention: nats.LimitsPolicy,
			Storage:   nats.FileStorage,
		}
		_, err := p.js.UpdateStream(cfg, nats.Context(ctx))
		if errors.Is(err, nats.ErrStreamNotFound) {
			_, err = p.js.AddStream(cfg, nats.Context(ctx))
			if err != nil {
				return fmt.Errorf("create after update found no stream: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		return nil
	})

	p.run("purge_stream", func(ctx context.Context) error {
		// nats.go 1.22's PurgeStream drops a Context option: MaxWait ends this one.
		return p.js.PurgeStream(stream, nats.Context(ctx))
	})

	p.run("delete_stream", func(ctx context.Context) error {
		return p.js.DeleteStream(stream, nats.Context(ctx))
	})

	p.run("delete_msg_1", func(ctx context.Context) error {
		return p.js.DeleteMsg(stream, 1, nats.Context(ctx))
	})

	p.run("other_stream_info", func(ctx context.Context) error {
		_, err := p.js.StreamInfo("UNIBUS_"+*other, nats.Context(ctx))
		return err
	})

	p.run("kv_rooms_get", func(ctx context.Context) error {
		// KeyValue() asks for the bucket's stream info before any get. It takes no context:
		// the JetStream context's MaxWait bounds it, a violation cannot end it early.
		kv, err := p.js.KeyValue("UNIBUS_ROOMS")
		if err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		_, err = kv.Get(*room)
		return err
	})

	p.run("publish_frame", func(ctx context.Context) error {
		// Over core NATS, as every peer publishes: room streams send no acknowledgements
		// (a JetStream publish would wait for one in vain). The test counts what was stored.
		if err := p.nc.Publish(subject, []byte("frame from a Go member")); err != nil {
			return err
		}
		return p.nc.FlushWithContext(ctx)
	})
}

func fatal(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	}
}
