package presence_test

import (
	"fmt"
	"time"

	"github.com/seed351623e9/presence"
)

// A real-time worker declares a 1 s session timeout and a batch job 5 min;
// a consumer that declares nothing is judged by the read's TTL. Two minutes
// after they all beat, each is judged by its own budget.
func ExampleRegistry_HeartbeatWithTTL() {
	r := presence.New(presence.WithTTLBounds(time.Second, 30*time.Minute))
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	_ = r.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: "realtime", Consumer: "rt-1"}, 1, time.Second, now)
	_ = r.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: "batch", Consumer: "nightly"}, 1, 5*time.Minute, now)
	_ = r.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: "batch", Consumer: "eager"}, 1, time.Millisecond, now) // raised to 1 s
	_ = r.Heartbeat(presence.Key{Queue: "orders", Group: "legacy", Consumer: "old"}, 1, now)

	later := now.Add(2 * time.Minute)
	for _, c := range r.Snapshot(later, presence.DefaultTTL) {
		fmt.Printf("%-8s %-7s ttl=%v\n", c.Consumer, c.State, c.TTL)
	}
	fmt.Println("pruned:", r.PruneExpired(later, presence.DefaultTTL))
	// Output:
	// eager    expired ttl=1s
	// nightly  active  ttl=5m0s
	// old      expired ttl=0s
	// rt-1     expired ttl=1s
	// pruned: 3
}
