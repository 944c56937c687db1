package presence_test

import (
	"fmt"
	"runtime"
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

	// Long keys (over the hash's short-input path) allocate nothing either.
	long := key(fmt.Sprintf("%0200d", 1), "g", "c")
	beat(t, r, long, 0, now)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = r.Heartbeat(long, 1, now)
	}), "refresh by long key")
}

func TestRegistrationAllocatesAtMostTwice(t *testing.T) {
	const n = 10000
	keys := make([]presence.Key, n)
	for i := range keys {
		// 100 consumers a group, so that the group index is exercised.
		keys[i] = key("orders", fmt.Sprintf("g-%03d", i/100), fmt.Sprintf("w-%06d", i))
	}
	r := presence.New(presence.WithPresize(2 * n)) // no shard growth in the measurement
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range keys {
		_ = r.Heartbeat(k, 0, t0)
	}
	runtime.ReadMemStats(&after)
	// AllocsPerRun rounds down; this counts exactly. Each registration
	// allocates its entry block and the shard map's entry; what exceeds 2
	// is the group index, amortised: a few records per new group and the
	// growth of its members map (about 0.14 a registration at 100
	// consumers a group).
	perOp := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.3f allocs per registration", perOp)
	assert.GreaterOrEqual(t, perOp, 2.0)
	assert.LessOrEqual(t, perOp, 2.2)
	assert.Equal(t, n, r.Len())
}
