// Command broker is a runnable mini queue broker that embeds presence: a few
// in-memory queues polled QUEUE READ-style by simulated consumers, each of
// which heartbeats through its Handle on every read, delivered or not. Some
// consumers die (they stop reading and keep their leases), some sit idle on
// a queue that gets no messages. Two groups declare their own session
// timeouts: a real-time group that polls every few hundred milliseconds and
// is judged by a short TTL (one of its workers dies, and goes stale within
// that budget), and a batch group that polls far less often than the
// default TTL and is judged by a long one, so it stays active. A Sweeper prunes the dead; the presence page,
// the JSON API and Prometheus metrics (presenceprom, plus the Go runtime and
// process collectors) show it all live. With -redis it also mirrors the
// registry into Redis through presenceredis.
//
// It is a module of its own, so that its Prometheus and Redis dependencies
// stay out of the presence module; from the repository root, the workspace
// (go.work) lets it run as
//
//	go run ./examples/broker            # prints the URLs; Ctrl-C to stop
//	go run ./examples/broker -ttl 3s -consumers 12 -duration 1m
//	go run ./examples/broker -realtime-ttl 500ms -batch-ttl 2m -batch-every 45s
//	go run ./examples/broker -redis 127.0.0.1:6379
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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
	"github.com/seed351623e9/presence/presenceprom"
	"github.com/seed351623e9/presence/presenceredis"
)

type config struct {
	addr      string
	consumers int
	ttl       time.Duration
	duration  time.Duration
	redis     string // Redis address to mirror to; empty: no mirror

	// The groups with their own TTLs; 0 workers: no such group.
	realtime    int           // workers of orders/realtime, polling every 100-300 ms
	realtimeTTL time.Duration // the TTL they declare
	batch       int           // jobs of orders/batch, polling every batchEvery
	batchTTL    time.Duration // the TTL they declare
	batchEvery  time.Duration
}

// total returns the number of simulated consumers.
func (c config) total() int { return c.consumers + c.realtime + c.batch }

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address (127.0.0.1:0 picks a free port)")
	flag.IntVar(&c.consumers, "consumers", 9, "simulated consumers")
	flag.DurationVar(&c.ttl, "ttl", 5*time.Second, "heartbeat budget")
	flag.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	flag.StringVar(&c.redis, "redis", "", "mirror the registry to the Redis server at this address (empty: no mirror)")
	flag.IntVar(&c.realtime, "realtime", 3, "real-time workers (group orders/realtime; one of them dies)")
	flag.DurationVar(&c.realtimeTTL, "realtime-ttl", time.Second, "the heartbeat budget the real-time workers declare")
	flag.IntVar(&c.batch, "batch", 2, "batch jobs (group orders/batch)")
	flag.DurationVar(&c.batchTTL, "batch-ttl", time.Minute, "the heartbeat budget the batch jobs declare")
	flag.DurationVar(&c.batchEvery, "batch-every", 20*time.Second, "how often a batch job polls")
	flag.Parse()
	if c.consumers < 1 || c.ttl <= 0 || c.duration < 0 || c.realtime < 0 || c.batch < 0 ||
		c.realtimeTTL <= 0 || c.batchTTL <= 0 || c.batchEvery <= 0 {
		fmt.Fprintln(os.Stderr, "broker: -consumers and the TTLs must be positive, -realtime and -batch and -duration not negative")
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
	if err := run(ctx, c, ln, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

// run serves the registry's page, API and metrics on ln and simulates the
// broker until ctx is done.
func run(ctx context.Context, c config, ln net.Listener, out io.Writer) error {
	reg := presence.New(presence.WithCounters())
	srv := &http.Server{Handler: routes(reg, c.ttl), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "presence page: %s/presence/\nJSON:          %s/presence/consumers  %s/presence/groups\nmetrics:       %s/metrics\n",
		base, base, base, base)

	var wg sync.WaitGroup
	background := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	if c.redis != "" {
		release := mirror(ctx, reg, c.redis, background)
		defer release()
		fmt.Fprintf(out, "mirroring to:  redis://%s\n", c.redis)
	}
	defer wg.Wait() // before the mirror is released: its Run flushes last

	queues := map[string]*queue{"orders": {}, "billing": {}, "quiet": {}} // nothing is ever sent to "quiet"
	background(func() { produce(ctx, queues["orders"], queues["billing"]) })
	// No Interval: the sweeper sweeps every half of the shortest TTL in
	// play, the real-time group's once it has declared it.
	background(func() { _ = (&presence.Sweeper{Registry: reg, TTL: c.ttl}).Run(ctx) })
	for i := 0; i < c.consumers; i++ {
		k, dieAfter := simulated(i, c.ttl)
		background(func() { consume(ctx, reg.Handle(k), queues[k.Queue], poller{dieAfter: dieAfter}) })
	}
	for i := 0; i < c.realtime; i++ {
		k := presence.Key{Queue: "orders", Group: "realtime", Consumer: fmt.Sprintf("rt-%d", i)}
		p := poller{ttl: c.realtimeTTL}
		if i == 0 {
			p.dieAfter = 3 * c.realtimeTTL // then stale within its own TTL, expired within two
		}
		background(func() { consume(ctx, reg.Handle(k), queues[k.Queue], p) })
	}
	for i := 0; i < c.batch; i++ {
		k := presence.Key{Queue: "orders", Group: "batch", Consumer: fmt.Sprintf("job-%d", i)}
		background(func() { consume(ctx, reg.Handle(k), queues[k.Queue], poller{ttl: c.batchTTL, every: c.batchEvery}) })
	}
	<-ctx.Done()
	return nil
}

// routes serves the presence page and JSON API under /presence/, and on
// /metrics the registry through presenceprom next to the Go runtime and
// process collectors, in a Prometheus registry of the broker's own.
func routes(reg *presence.Registry, ttl time.Duration) http.Handler {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(
		presenceprom.New(reg, presenceprom.Options{TTL: ttl}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{
		TTL: ttl, Logger: slog.Default(),
	})))
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	return mux
}

// mirror starts a write-behind mirror of reg into the Redis server at addr,
// after restoring what Redis already holds. The returned function, called
// once background work has stopped, releases the client.
func mirror(ctx context.Context, reg *presence.Registry, addr string, background func(func())) (release func()) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	m := presenceredis.New(reg, rdb, presenceredis.Options{})
	if n, err := m.Restore(ctx); err != nil {
		slog.Warn("broker: restore from Redis failed; starting empty", "addr", addr, "err", err)
	} else {
		slog.Info("broker: restored from Redis", "consumers", n)
	}
	background(func() { _ = m.Run(ctx) }) // flushes once more when ctx is done
	return func() { _ = rdb.Close() }
}

// simulated returns the key of the i-th simulated consumer, and after how
// long it dies holding its leases (0: never). A third of them read
// "billing"; some of the others sit idle on "quiet"; every fourth dies.
func simulated(i int, ttl time.Duration) (presence.Key, time.Duration) {
	k := presence.Key{Queue: "orders", Group: "workers", Consumer: fmt.Sprintf("worker-%d", i)}
	switch {
	case i%3 == 1:
		k.Queue, k.Group = "billing", "invoicer"
	case i%3 == 2 && i%2 == 0:
		k.Queue, k.Group = "quiet", "idle"
	}
	var dieAfter time.Duration
	if i%4 == 3 {
		dieAfter = time.Duration(2+i) * ttl / 4
	}
	return k, dieAfter
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

// produce sends a message to orders every 50 ms, and every third one to
// billing too, until ctx is done.
func produce(ctx context.Context, orders, billing *queue) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			orders.push(i)
			if i%3 == 0 {
				billing.push(i)
			}
		}
	}
}

// poller is how a simulated consumer polls.
type poller struct {
	ttl      time.Duration // the TTL it declares; 0: none, judged by the readers' TTL
	every    time.Duration // time between reads; 0: 100-300 ms
	dieAfter time.Duration // when it dies holding its leases; 0: never
}

// consume polls q like a worker: read, heartbeat with what it got (and
// the TTL it declares, if any), work. A worker with a fixed period reads
// once as it starts, the others after their first wait.
func consume(ctx context.Context, h *presence.Handle, q *queue, p poller) {
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 1))
	for first := true; ; first = false {
		wait := p.every
		if wait <= 0 {
			wait = time.Duration(100+rng.IntN(200)) * time.Millisecond
		} else if first {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if p.dieAfter > 0 && time.Since(start) > p.dieAfter {
			<-ctx.Done() // dead: no more reads, no more beats
			return
		}
		got := q.read(1 + rng.IntN(3))
		if err := h.HeartbeatWithTTL(uint32(len(got)), p.ttl, time.Now()); err != nil {
			slog.Error("heartbeat", "consumer", h.Key(), "err", err)
		}
	}
}
