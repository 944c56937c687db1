package presence_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/seed351623e9/presence"
)

// BenchmarkHeartbeatDeclaringTTL compares, in one run, a refresh that
// declares nothing with one that re-declares the TTL the consumer already
// has (one more load, no write), by key and by handle, over 10,000
// registered consumers.
func BenchmarkHeartbeatDeclaringTTL(b *testing.B) {
	const n = 10000
	r := presence.New()
	keys := make([]presence.Key, n)
	handles := make([]*presence.Handle, n)
	for i := range keys {
		keys[i] = presence.Key{Queue: "queue-0000", Group: fmt.Sprintf("group-%d", i/100%10), Consumer: fmt.Sprintf("consumer-%07d", i)}
		handles[i] = r.Handle(keys[i])
		if err := r.HeartbeatWithTTL(keys[i], 0, time.Minute, t0); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		beat func(i int, now time.Time) error
	}{
		{"path=key/declare=none", func(i int, now time.Time) error { return r.Heartbeat(keys[i], 1, now) }},
		{"path=key/declare=same", func(i int, now time.Time) error { return r.HeartbeatWithTTL(keys[i], 1, time.Minute, now) }},
		{"path=handle/declare=none", func(i int, now time.Time) error { return handles[i].Heartbeat(1, now) }},
		{"path=handle/declare=same", func(i int, now time.Time) error { return handles[i].HeartbeatWithTTL(1, time.Minute, now) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			now := t0.Add(time.Second)
			i := 0
			for b.Loop() {
				if err := tc.beat(i, now); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}
