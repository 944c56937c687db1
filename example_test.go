package presence_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/seed351623e9/presence"
)

func Example() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	// The broker heartbeats on every QUEUE READ, whether or not it delivered.
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 3, now)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w2"}, 0, now.Add(-45*time.Second))
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w3"}, 7, now.Add(-5*time.Minute))

	for _, c := range r.Snapshot(now, presence.DefaultTTL) {
		fmt.Printf("%s/%s/%s %-7s age=%-5v leases=%d\n", c.Queue, c.Group, c.Consumer, c.State, c.Age, c.Leases)
	}
	fmt.Println("pruned:", r.PruneExpired(now, presence.DefaultTTL), "left:", r.Len())
	// Output:
	// orders/workers/w1 active  age=0s    leases=3
	// orders/workers/w2 stale   age=45s   leases=0
	// orders/workers/w3 expired age=5m0s  leases=7
	// pruned: 1 left: 2
}

func ExampleRegistry_Handle() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	// One handle per consumer connection: no hashing or lookup per beat.
	h := r.Handle(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"})
	fmt.Println("registered before first beat:", r.Len())
	for i := 0; i < 3; i++ {
		now = now.Add(time.Second)
		_ = h.Heartbeat(uint32(i), now)
	}
	c := r.Snapshot(now, presence.DefaultTTL)[0]
	fmt.Println(c.Consumer, c.State, c.Leases, c.LastHeartbeat.Format(time.TimeOnly))

	// A handle outlives removal: the next beat registers the consumer again.
	r.Deregister(h.Key())
	_ = h.Heartbeat(0, now)
	fmt.Println("after deregister and beat:", r.Len())
	// Output:
	// registered before first beat: 0
	// w1 active 2 12:00:03
	// after deregister and beat: 1
}

func ExampleRegistry_CountActiveByGroup() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 0, now)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w2"}, 0, now)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "audit", Consumer: "a1"}, 0, now)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "audit", Consumer: "gone"}, 9, now.Add(-time.Hour))

	counts := r.CountActiveByGroup(now, presence.DefaultTTL)
	fmt.Println("orders/workers:", counts[presence.GroupKey{Queue: "orders", Group: "workers"}])
	fmt.Println("orders/audit:", counts[presence.GroupKey{Queue: "orders", Group: "audit"}])
	// Output:
	// orders/workers: 2
	// orders/audit: 1
}

func ExampleWithMaxConsumers() {
	r := presence.New(presence.WithMaxConsumers(1))
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	fmt.Println(r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "a"}, 0, now))
	fmt.Println(r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "b"}, 0, now))
	// Output:
	// <nil>
	// presence: too many consumers
}

func ExampleClassify() {
	for _, age := range []time.Duration{10 * time.Second, 45 * time.Second, 90 * time.Second} {
		fmt.Println(age, presence.Classify(age, presence.DefaultTTL))
	}
	// Output:
	// 10s active
	// 45s stale
	// 1m30s expired
}

func ExampleRegistry_SnapshotGroup() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w2"}, 1, now)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 0, now.Add(-40*time.Second))
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "audit", Consumer: "a1"}, 0, now)

	// Costs what the group holds, not what the registry holds.
	for _, c := range r.SnapshotGroup(presence.GroupKey{Queue: "orders", Group: "workers"}, now, presence.DefaultTTL) {
		fmt.Println(c.Consumer, c.State)
	}
	fmt.Println(len(r.SnapshotQueue("orders", now, presence.DefaultTTL)), "in the queue")
	// Output:
	// w1 stale
	// w2 active
	// 3 in the queue
}

func ExampleRegistry_Lookup() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	k := presence.Key{Queue: "orders", Group: "workers", Consumer: "poller"}
	_ = r.Heartbeat(k, 4, now.Add(-time.Minute)) // got work a minute ago
	_ = r.Heartbeat(k, 0, now)                   // polling, nothing to do

	c, ok := r.Lookup(k, now, presence.DefaultTTL)
	fmt.Println(ok, c.State, "seen", now.Sub(c.LastHeartbeat), "worked", now.Sub(c.LastActive), "ago")
	// Output:
	// true active seen 0s worked 1m0s ago
}

func ExampleRegistry_Stats() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "a"}, 0, now)
	_ = r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "b"}, 0, now.Add(-45*time.Second))
	_ = r.Heartbeat(presence.Key{Queue: "q", Group: "h", Consumer: "c"}, 0, now.Add(-time.Hour))

	fmt.Printf("%+v\n", r.Stats(now, presence.DefaultTTL))
	fmt.Printf("%+v\n", r.CountByGroup(now, presence.DefaultTTL)[presence.GroupKey{Queue: "q", Group: "g"}])
	// Output:
	// {Active:1 Stale:1 Expired:1}
	// {Active:1 Stale:1 Expired:0}
}

func ExampleRegistry_Subscribe() {
	r := presence.New()
	sub := r.Subscribe(16)
	defer sub.Close()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	k := presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}

	_ = r.Heartbeat(k, 0, now)
	r.PruneExpired(now.Add(45*time.Second), presence.DefaultTTL) // a sweep sees it stale
	r.PruneExpired(now.Add(2*time.Minute), presence.DefaultTTL)  // and then expired

	for i := 0; i < 3; i++ {
		e := <-sub.C
		fmt.Println(e.Kind, e.Key.Consumer, e.At.Format(time.TimeOnly))
	}
	// Output:
	// joined w1 12:00:00
	// stale w1 12:00:45
	// expired w1 12:02:00
}

func ExampleSweeper() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "dead"}, 0, now.Add(-time.Hour))

	// In a broker: go sw.Run(ctx), with the default ticker and clock. Here
	// the example drives one sweep by hand and stops.
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	sw := &presence.Sweeper{
		Registry: r,
		TTL:      presence.DefaultTTL,
		Now:      func() time.Time { return now },
		Ticks:    ticks,
		OnSweep: func(_ time.Time, pruned int) {
			fmt.Println("pruned", pruned)
			cancel()
		},
	}
	go func() { ticks <- now }()
	fmt.Println(sw.Run(ctx))
	// Output:
	// pruned 1
	// context canceled
}

func ExampleWithMaxConsumersPerGroup() {
	r := presence.New(presence.WithMaxConsumersPerGroup(1))
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	fmt.Println(r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "a"}, 0, now))
	err := r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "b"}, 0, now)
	fmt.Println(err, errors.Is(err, presence.ErrGroupFull))
	// Output:
	// <nil>
	// presence: consumer group full true
}

func ExampleRegistry_All() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []string{"a", "b", "c"} {
		_ = r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: c}, 2, now)
	}
	leases := 0
	for c := range r.All(now, presence.DefaultTTL) { // no copy of the registry
		leases += int(c.Leases)
	}
	fmt.Println("leases held:", leases)
	// Output:
	// leases held: 6
}

func ExampleRegistry_AppendSnapshot() {
	r := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "a"}, 0, now)

	var buf []presence.Consumer
	for tick := 0; tick < 3; tick++ { // a dashboard polling: one buffer, reused
		buf = r.AppendSnapshot(buf[:0], now, presence.DefaultTTL)
	}
	fmt.Println(len(buf), buf[0].Consumer)
	// Output:
	// 1 a
}

func ExampleRegistry_WriteTo() {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	before := presence.New()
	_ = before.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 2, now.Add(-time.Hour))
	_ = before.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 0, now)

	var buf bytes.Buffer // a file, in a broker: see Checkpointer
	if _, err := before.WriteTo(&buf); err != nil {
		panic(err)
	}
	after := presence.New() // the restarted broker
	if _, err := after.ReadFrom(&buf); err != nil {
		panic(err)
	}
	c := after.Snapshot(now, presence.DefaultTTL)[0]
	fmt.Println(c.Consumer, "registered", now.Sub(c.RegisteredAt), "ago, last active", now.Sub(c.LastActive), "ago")
	// Output:
	// w1 registered 1h0m0s ago, last active 1h0m0s ago
}

func ExampleCheckpointer() {
	dir, _ := os.MkdirTemp("", "presence")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "presence.ckpt")
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	r := presence.New()
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 0, now)
	cp := &presence.Checkpointer{Registry: r, Path: path}
	fmt.Println("save:", cp.Save()) // Run does this on an interval and at shutdown

	restarted := presence.New()
	fmt.Println("load:", (&presence.Checkpointer{Registry: restarted, Path: path}).Load())
	fmt.Println("consumers:", restarted.Len())
	// Output:
	// save: <nil>
	// load: <nil>
	// consumers: 1
}
