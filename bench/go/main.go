// Command benchgo is the benchmark's Go client (bench/gofloor.py builds and runs it): the
// fastest client this machine has, so the service's figures are compared with a floor
// that is not itself slow, and the service is timed from a Go caller as well as Python.
//
// It is built in GOPATH mode against Debian's nats.go together with the example peer's
// request.go (examples/go/peer), whose signing is the protocol's own, so nothing of the
// signed-request scheme is written twice.
//
//	benchgo -mode floor   -url U -seed S -inbox I -stream NAME -subject SUBJ -last SEQ -limits 10,1000 -runs N
//	benchgo -mode history -url U -seed S -subject SUBJ -limits 10,1000 -runs N
//
// floor: the last `limit` frames streamed from JetStream by an ordered consumer, the way a
// Go client reads a stream, with no service in between. history: the signed history
// request answered with the JSON envelope and decoded. Either prints one JSON object,
// {"<limit>": [milliseconds of each run, ...], ...}; a run that does not get every frame
// fails the program.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

const warmup = 5

func main() {
	mode := flag.String("mode", "floor", "floor or history")
	url := flag.String("url", nats.DefaultURL, "NATS URL")
	seedFile := flag.String("seed", "", "nkey seed file to connect (and, for history, sign) with")
	inbox := flag.String("inbox", "", "inbox prefix (default _INBOX.<the seed's public key>)")
	stream := flag.String("stream", "", "floor: the room's stream")
	subject := flag.String("subject", "", "floor: the room's subject; history: the history request subject")
	last := flag.Uint64("last", 0, "floor: the stream's last sequence")
	limitsFlag := flag.String("limits", "10,1000", "comma-separated page sizes")
	runs := flag.Int("runs", 100, "timed runs per limit")
	flag.Parse()

	user, err := loadSeed(*seedFile)
	check(err)
	public, err := user.PublicKey()
	check(err)
	prefix := *inbox
	if prefix == "" {
		prefix = "_INBOX." + public
	}
	// A loaded machine can take longer than nats.go's default 2 s to admit a connection
	// through the auth callout: a longer handshake, and a few attempts.
	var nc *nats.Conn
	for attempt := 0; ; attempt++ {
		nc, err = nats.Connect(*url,
			nats.Nkey(public, user.Sign),
			nats.CustomInboxPrefix(prefix),
			nats.Timeout(10*time.Second),
		)
		if err == nil || attempt == 4 {
			break
		}
		time.Sleep(time.Second)
	}
	check(err)
	defer nc.Close()

	var limits []int
	for _, text := range strings.Split(*limitsFlag, ",") {
		n, err := strconv.Atoi(text)
		check(err)
		limits = append(limits, n)
	}
	var once func(limit int) error
	switch *mode {
	case "floor":
		js, err := nc.JetStream()
		check(err)
		once = func(limit int) error { return floor(js, *stream, *subject, *last, limit) }
	case "history":
		once = func(limit int) error { return history(nc, user, *subject, limit) }
	default:
		check(fmt.Errorf("unknown mode %q", *mode))
	}
	out := map[string][]float64{}
	for _, limit := range limits {
		for i := 0; i < warmup; i++ {
			check(once(limit))
		}
		samples := make([]float64, 0, *runs)
		for i := 0; i < *runs; i++ {
			start := time.Now()
			check(once(limit))
			samples = append(samples, float64(time.Since(start).Nanoseconds())/1e6)
		}
		out[strconv.Itoa(limit)] = samples
	}
	check(json.NewEncoder(os.Stdout).Encode(out))
}

// floor reads the last `limit` frames up to `last` with an ordered consumer.
func floor(js nats.JetStreamContext, stream, subject string, last uint64, limit int) error {
	start := uint64(1)
	if last > uint64(limit) {
		start = last - uint64(limit) + 1
	}
	sub, err := js.SubscribeSync(subject, nats.BindStream(stream), nats.OrderedConsumer(), nats.StartSequence(start))
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	for got := start; got <= last; got++ {
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			return fmt.Errorf("floor: frame %d of %d..%d: %w", got, start, last, err)
		}
	}
	return nil
}

// history sends one signed history request and decodes the JSON envelope.
func history(nc *nats.Conn, user nkeys.KeyPair, subject string, limit int) error {
	reply, err := request(nc, user, subject, []byte("limit="+strconv.Itoa(limit)))
	if err != nil {
		return err
	}
	var page struct {
		Messages [][]byte `json:"messages"`
	}
	if err := json.Unmarshal(reply.Data, &page); err != nil {
		return err
	}
	if len(page.Messages) != limit {
		return fmt.Errorf("history: %d frames, wanted %d", len(page.Messages), limit)
	}
	return nil
}

func loadSeed(path string) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgo:", err)
		os.Exit(1)
	}
}
