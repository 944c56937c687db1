package presence_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/seed351623e9/presence"
)

func TestRefreshAllocatesNothing(t *testing.T) {
	r := presence.New()
	k := key("orders", "workers", "w-1")
	h := r.Handle(k)
	beat(t, r, k, 0, t0)
	now := t0
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = r.Heartbeat(k, 1, now)
	}), "refresh by key")
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = h.Heartbeat(1, now)
	}), "refresh by handle")

	// Long keys take the streaming hash path; still no allocation.
	long := key(fmt.Sprintf("%0200d", 1), "g", "c")
	beat(t, r, long, 0, now)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = r.Heartbeat(long, 1, now)
	}), "refresh by long key")
}

func TestRegistrationAllocatesAtMostTwice(t *testing.T) {
	const n = 10000
	keys := make([]presence.Key, n+1)
	for i := range keys {
		keys[i] = key("orders", "workers", fmt.Sprintf("w-%06d", i))
	}
	r := presence.New(presence.WithPresize(2 * n)) // no map growth in the measurement
	i := 0
	allocs := testing.AllocsPerRun(n, func() {
		_ = r.Heartbeat(keys[i], 0, t0)
		i++
	})
	t.Logf("%.2f allocs per registration", allocs)
	assert.LessOrEqual(t, allocs, 2.0)
}
