// Command broker is a runnable mini queue broker that embeds presence: a few
// in-memory queues polled QUEUE READ-style by simulated consumers, each of
// which heartbeats through its Handle on every read, delivered or not. Some
// consumers die (they stop reading and keep their leases), some sit idle on
// a queue that gets no messages. A Sweeper prunes the dead; the presence page,
// the JSON API and a Prometheus endpoint show it all live.
//
//	go run ./examples/broker            # prints the URL; Ctrl-C to stop
//	go run ./examples/broker -ttl 3s -consumers 12 -duration 1m
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

type config struct {
	addr      string
	consumers int
	ttl       time.Duration
	duration  time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address (127.0.0.1:0 picks a free port)")
	flag.IntVar(&c.consumers, "consumers", 9, "simulated consumers")
	flag.DurationVar(&c.ttl, "ttl", 5*time.Second, "heartbeat budget")
	flag.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	flag.Parse()
	if c.consumers < 1 || c.ttl <= 0 || c.duration < 0 {
		fmt.Fprintln(os.Stderr, "broker: -consumers and -ttl must be positive, -duration not negative")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
	if err := run(ctx, c, ln, os.Stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

// queue is an in-memory message queue.
type queue struct {
	mu   sync.Mutex
	msgs []int
}

func (q *queue) push(m int) {
	q.mu.Lock()
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
}

// read is QUEUE READ: up to max messages, possibly none.
func (q *queue) read(max int) []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.msgs))
	out := q.msgs[:n:n]
	q.msgs = q.msgs[n:]
	return out
}

func run(ctx context.Context, c config, ln net.Listener, out io.Writer) error {
	reg := presence.New(presence.WithCounters())
	queues := map[string]*queue{"orders": {}, "billing": {}, "quiet": {}} // nothing is ever sent to "quiet"

	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{
		TTL: c.ttl, Logger: slog.Default(),
	})))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { writeMetrics(w, reg, c.ttl) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "presence page: %s/presence/\nJSON:          %s/presence/consumers  %s/presence/groups\nmetrics:       %s/metrics\n",
		base, base, base, base)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // producers
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				queues["orders"].push(i)
				if i%3 == 0 {
					queues["billing"].push(i)
				}
			}
		}
	}()

	wg.Add(1)
	go func() { // the sweeper
		defer wg.Done()
		_ = (&presence.Sweeper{Registry: reg, TTL: c.ttl, Interval: c.ttl / 4}).Run(ctx)
	}()

	for i := 0; i < c.consumers; i++ {
		k := presence.Key{Queue: "orders", Group: "workers", Consumer: fmt.Sprintf("worker-%d", i)}
		switch i % 3 {
		case 1:
			k.Queue, k.Group = "billing", "invoicer"
		case 2:
			if i%2 == 0 {
				k.Queue, k.Group = "quiet", "idle"
			}
		}
		// Every fourth consumer dies after a while, holding its leases.
		var dieAfter time.Duration
		if i%4 == 3 {
			dieAfter = time.Duration(2+i) * c.ttl / 4
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			consume(ctx, reg.Handle(k), queues[k.Queue], dieAfter)
		}()
	}
	<-ctx.Done()
	return nil
}

// consume polls q like a worker: read, heartbeat with what it got, work.
func consume(ctx context.Context, h *presence.Handle, q *queue, dieAfter time.Duration) {
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(100+rng.IntN(200)) * time.Millisecond):
		}
		if dieAfter > 0 && time.Since(start) > dieAfter {
			<-ctx.Done() // dead: no more reads, no more beats
			return
		}
		got := q.read(1 + rng.IntN(3))
		if err := h.Heartbeat(uint32(len(got)), time.Now()); err != nil {
			slog.Error("heartbeat", "consumer", h.Key(), "err", err)
		}
	}
}

// writeMetrics writes the Prometheus text format by hand, to keep this
// example on the standard library; a real broker would register
// presenceprom's collector instead.
func writeMetrics(w http.ResponseWriter, reg *presence.Registry, ttl time.Duration) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# HELP presence_consumers Consumers by queue, group and state at scrape time.")
	fmt.Fprintln(w, "# TYPE presence_consumers gauge")
	counts := reg.CountByGroup(time.Now(), ttl)
	groups := make([]presence.GroupKey, 0, len(counts))
	for g := range counts {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		return groups[i].Queue < groups[j].Queue || groups[i].Queue == groups[j].Queue && groups[i].Group < groups[j].Group
	})
	for _, g := range groups {
		n := counts[g]
		for _, s := range []struct {
			name string
			v    int
		}{{"active", n.Active}, {"stale", n.Stale}, {"expired", n.Expired}} {
			fmt.Fprintf(w, "presence_consumers{queue=%q,group=%q,state=%q} %d\n", g.Queue, g.Group, s.name, s.v)
		}
	}
	t := reg.Counters()
	for _, m := range []struct {
		name, help string
		v          int64
	}{
		{"presence_heartbeats_total", "Heartbeats recorded.", t.Heartbeats},
		{"presence_registrations_total", "Consumers registered.", t.Registrations},
		{"presence_pruned_total", "Consumers removed as expired.", t.Expired},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", m.name, m.help, m.name, m.name, m.v)
	}
}
