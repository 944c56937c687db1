package presence_test

import (
	"fmt"
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
