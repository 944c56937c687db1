package presence_test

import (
	"fmt"
	"slices"
	"time"

	"github.com/seed351623e9/presence"
)

// A subscriber can rebuild membership from the events alone: one key's
// events arrive in the order the registry applied them, so Joined adds the
// consumer and Expired or Left removes it. If Dropped grows, events were
// lost; start again from a Snapshot.
func ExampleSubscription_membership() {
	r := presence.New()
	sub := r.Subscribe(64)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	w1 := presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}
	w2 := presence.Key{Queue: "orders", Group: "workers", Consumer: "w2"}

	_ = r.Heartbeat(w1, 0, now)
	_ = r.Heartbeat(w2, 0, now)
	r.Deregister(w1)
	_ = r.Heartbeat(w1, 0, now.Add(time.Second)) // back again
	_ = r.Heartbeat(w1, 0, now.Add(2*time.Minute))
	r.PruneExpired(now.Add(2*time.Minute), presence.DefaultTTL) // w2 expired
	sub.Close()

	members := map[presence.Key]bool{}
	for e := range sub.C {
		switch e.Kind {
		case presence.EventJoined:
			members[e.Key] = true
		case presence.EventExpired, presence.EventLeft:
			delete(members, e.Key)
		}
	}
	var names []string
	for k := range members {
		names = append(names, k.Consumer)
	}
	slices.Sort(names)
	fmt.Println(names, sub.Dropped())
	// Output:
	// [w1] 0
}
