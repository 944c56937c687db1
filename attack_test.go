package presence_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Adversarial tests of the walk lists, the group index and the prune pass's
// fast path at the edges of the time range.

// A consumer that left does not keep its declared TTL in play, even at the
// bottom of the time range, where the heartbeat word of a retired entry
// (nanotime.None, the smallest int64) is 1 ns older than the earliest time
// a clock can give: the entry stays in its walk list until the list is
// compacted, and the prune pass must not count it among those it kept.
func TestPruneIgnoresRetiredDeclarationAtTimeFloor(t *testing.T) {
	floor := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) // clamps to the earliest nanosecond
	r := presence.New(presence.WithShards(1))            // one walk list
	require.NoError(t, r.HeartbeatWithTTL(key("q", "g", "gone"), 0, time.Second, floor))
	beat(t, r, key("q", "g", "stays"), 0, floor)
	require.True(t, r.Deregister(key("q", "g", "gone"))) // retired, and kept: 1 retired, 1 live
	assert.Zero(t, r.PruneExpired(floor, time.Hour))
	assert.Equal(t, 30*time.Minute, presence.SweepEvery(r, time.Hour),
		"the sweeper serves the TTL of a consumer that left")
}

// Stats allocates nothing, as its doc says, whatever the number of walk
// lists: a registry on a large machine has more of them (four per P) than
// a walk can copy into its stack array.
func TestStatsAllocatesNothingWithManyShards(t *testing.T) {
	for _, shards := range []int{1, 64, 256} {
		r := presence.New(presence.WithShards(shards))
		for i := range 100 {
			beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
		}
		assert.Zero(t, testing.AllocsPerRun(10, func() { r.Stats(t0, ttl) }), "shards=%d", shards)
		assert.Zero(t, testing.AllocsPerRun(10, func() { r.PruneExpired(t0, ttl) }), "prune, shards=%d", shards)
	}
}

// A walk list does not keep the entries of consumers that left in
// proportion to the number of live ones whatever their size: a client that
// registers and removes one consumer with a long key over and over, next
// to many small live ones, would otherwise make the registry hold as many
// long keys as it has live consumers (16 MiB each at MaxKeyBytes). The
// list is rebuilt once its retired entries hold more than a few bytes per
// slot.
func TestWalkListDoesNotHoldLongKeysOfConsumersThatLeft(t *testing.T) {
	const live = 100
	r := presence.New(presence.WithShards(1)) // one list
	for i := range live {
		beat(t, r, key("q", "legit", fmt.Sprint("c", i)), 0, t0)
	}
	long := strings.Repeat("x", 64<<10)
	for i := range 50 {
		k := key("q", "atk", fmt.Sprint(long, i))
		beat(t, r, k, 0, t0)
		require.True(t, r.Deregister(k))
		require.Equal(t, []int{live}, r.WalkListLens(), "after %d long keys came and went", i+1)
	}
	// Small keys are still rebuilt away by count: 1 retired of 1 live is kept.
	beat(t, r, key("q", "legit", "small"), 0, t0)
	require.True(t, r.Deregister(key("q", "legit", "small")))
	require.Equal(t, []int{live + 1}, r.WalkListLens())
}

// BenchmarkPruneGroupsOfOneQueue prunes a queue of one-consumer groups, as
// a fan-out queue with a group per subscriber has: the groups die oldest
// first, at the far end of the queue's list. The time per group does not
// grow with the number of groups.
func BenchmarkPruneGroupsOfOneQueue(b *testing.B) {
	for _, groups := range []int{1000, 10000} {
		b.Run(fmt.Sprint("groups=", groups), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				r := presence.New()
				for i := range groups {
					_ = r.Heartbeat(key("q", fmt.Sprint("g", i), "c"), 0, t0)
				}
				b.StartTimer()
				if n := r.PruneExpired(t0.Add(time.Hour), time.Second); n != groups {
					b.Fatalf("pruned %d of %d", n, groups)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*groups), "ns/group")
		})
	}
}
