// Command stormgo is the benchmark's reconnect storm (bench/storm.py builds and runs it):
// many clients, each its own nkey identity, admitted through the auth callout at once.
// A Python client process cannot open connections faster than the callout answers them,
// so the storm is driven from Go, where the client side costs next to nothing.
//
//	stormgo -url U -clients N [-restart] [-deadline 120s]
//
// Phase one: every client connects at the same moment and retries a failed connect (a
// refusal, nats-server's authentication timeout) after the Go example peer's reconnect
// pacing, until the deadline. Phase two (-restart): the connections stay open, the caller
// restarts nats-server, and every client reconnects by itself with nats.go's own
// reconnect loop, configured as examples/go/peer configures it. Each phase prints one
// JSON object on its own line; after phase one the program waits for the restart.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The Go example peer's pacing (examples/go/peer/connect.go): a reconnect is routine.
const (
	reconnectWait   = 100 * time.Millisecond
	reconnectJitter = 100 * time.Millisecond
	dialTimeout     = 2 * time.Second
)

// phase is what one phase printed: seconds from its start until each client was in.
type phase struct {
	Phase     string         `json:"phase"`
	Clients   int            `json:"clients"`
	Admitted  int            `json:"admitted"`
	GaveUp    int            `json:"gave_up"`
	Seconds   float64        `json:"seconds"` // until the last client was admitted
	P50       float64        `json:"p50"`
	Retries   int64          `json:"retries"`          // failed attempts, all kinds
	Refused   int64          `json:"refused"`          // connect: attempts answered "Authorization Violation"
	TimedOut  int64          `json:"timed_out"`        // connect: attempts nats-server gave up on (no callout answer in time)
	Errors    map[string]int `json:"errors,omitempty"` // connect: failed attempts by error
	StartUnix int64          `json:"start_unix_ns"`
	LastUnix  int64          `json:"last_unix_ns"` // when the last client was admitted
}

// client is one identity's connection and what happened to it.
type client struct {
	user   nkeys.KeyPair
	public string
	nc     *nats.Conn
	dials  atomic.Int64 // TCP connections opened, successful or not
	atLoss atomic.Int64 // dials when the connection was last lost
	lost   chan struct{}
	back   chan time.Time
}

// countingDialer counts every attempt, so failed reconnects (which nats.go 1.22 reports
// to no handler) are still counted: each dial after the first is a retry.
type countingDialer struct{ c *client }

func (d countingDialer) Dial(network, address string) (net.Conn, error) {
	d.c.dials.Add(1)
	return (&net.Dialer{Timeout: dialTimeout}).Dial(network, address)
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS URL")
	clients := flag.Int("clients", 1000, "clients, each its own identity")
	restart := flag.Bool("restart", false, "after connecting, wait for a NATS restart and time the reconnects")
	deadline := flag.Duration("deadline", 120*time.Second, "a client not admitted by then gives up")
	open := flag.Bool("open", false, "connect without an nkey (an open server: the floor without the callout)")
	flag.Parse()

	all := make([]*client, *clients)
	for i := range all {
		user, err := nkeys.CreateUser()
		check(err)
		public, err := user.PublicKey()
		check(err)
		all[i] = &client{user: user, public: public, lost: make(chan struct{}, 1), back: make(chan time.Time, 1)}
		if *open {
			all[i].user = nil
		}
	}
	emit(connectAll(*url, all, *deadline))
	for _, c := range all { // a loss or return before the restart is not the restart's
		select {
		case <-c.lost:
		default:
		}
		select {
		case <-c.back:
		default:
		}
	}
	if *restart {
		emit(reconnectAll(all, *deadline))
	}
	for _, c := range all {
		if c.nc != nil {
			c.nc.Close()
		}
	}
}

// connectAll starts every client's first connect at once.
func connectAll(url string, all []*client, deadline time.Duration) phase {
	var retries, refused, timedOut atomic.Int64
	var mu sync.Mutex
	errors := map[string]int{}
	took := make([]float64, len(all))
	start := time.Now()
	give := start.Add(deadline)
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			for {
				nc, err := nats.Connect(url, options(c)...)
				if err == nil {
					c.nc = nc
					took[i] = time.Since(start).Seconds()
					return
				}
				retries.Add(1)
				mu.Lock()
				if text := err.Error(); len(errors) < 20 || errors[text] > 0 {
					errors[text]++
				}
				mu.Unlock()
				switch text := strings.ToLower(err.Error()); {
				case strings.Contains(text, "authorization violation"):
					refused.Add(1)
				case strings.Contains(text, "timeout"):
					timedOut.Add(1)
				}
				if time.Now().After(give) {
					took[i] = -1
					return
				}
				time.Sleep(reconnectWait + time.Duration(rand.Int63n(int64(reconnectJitter))))
			}
		}(i, c)
	}
	wg.Wait()
	p := summarize("connect", took, start)
	p.Retries, p.Refused, p.TimedOut = retries.Load(), refused.Load(), timedOut.Load()
	p.Errors = errors
	return p
}

// reconnectAll waits for every connection to be lost (the caller restarts NATS), then
// times each one's return from the first loss on.
func reconnectAll(all []*client, deadline time.Duration) phase {
	var first time.Time
	waiting := time.NewTimer(deadline)
	for _, c := range all {
		if c.nc == nil {
			continue
		}
		select {
		case <-c.lost:
		case <-waiting.C:
			check(fmt.Errorf("no restart within %s", deadline))
		}
		if first.IsZero() {
			first = time.Now()
		}
	}
	took := make([]float64, len(all))
	give := time.NewTimer(deadline)
	expired := false
	for i, c := range all {
		if c.nc == nil || expired {
			took[i] = -1
			continue
		}
		select {
		case at := <-c.back:
			took[i] = at.Sub(first).Seconds()
		case <-give.C:
			expired = true
			took[i] = -1
		}
	}
	p := summarize("restart", took, first)
	for i, c := range all {
		if c.nc != nil && took[i] >= 0 {
			// Every dial since the loss but the one that got back in was a failed attempt.
			p.Retries += c.dials.Load() - c.atLoss.Load() - 1
		}
	}
	return p
}

func options(c *client) []nats.Option {
	identity := []nats.Option{}
	if c.user != nil {
		identity = append(identity, nats.Nkey(c.public, c.user.Sign), nats.CustomInboxPrefix("_INBOX."+c.public))
	}
	return append(identity,
		nats.Name("stormgo"),
		nats.Timeout(dialTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitter),
		nats.IgnoreAuthErrorAbort(),
		nats.SetCustomDialer(countingDialer{c}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			c.atLoss.Store(c.dials.Load())
			select {
			case c.lost <- struct{}{}:
			default:
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case c.back <- time.Now():
			default:
			}
		}),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	)
}

func summarize(name string, took []float64, start time.Time) phase {
	p := phase{Phase: name, Clients: len(took), StartUnix: start.UnixNano()}
	var in []float64
	for _, t := range took {
		if t < 0 {
			p.GaveUp++
			continue
		}
		in = append(in, t)
	}
	p.Admitted = len(in)
	if len(in) > 0 {
		sort.Float64s(in)
		p.Seconds, p.P50 = in[len(in)-1], in[len(in)/2]
		p.LastUnix = start.Add(time.Duration(p.Seconds * 1e9)).UnixNano()
	}
	return p
}

func emit(p phase) {
	check(json.NewEncoder(os.Stdout).Encode(p))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "stormgo:", err)
		os.Exit(1)
	}
}
