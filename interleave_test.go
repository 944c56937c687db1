package presence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// These tests force, through the pause points of hooks.go, the races that
// the registry's protocols exist for: each runs a heartbeat of the same
// consumer at the one moment where a broken protocol loses it. They are
// deterministic, so a broken protocol fails them on every run, with or
// without -race.

// onceAt sets a hook that runs f the first time point is reached, and
// returns a function that clears the hook and reports whether f ran.
func onceAt(point presence.HookPoint, f func()) (clear func() bool) {
	fired := false
	unset := presence.SetTestHook(func(p presence.HookPoint) {
		if p == point && !fired {
			fired = true
			f()
		}
	})
	return func() bool { unset(); return fired }
}

// A beat that lands after CollectChanged read a consumer's row, but before
// CollectChanged returned, is in the next collection: the mark is cleared
// before the row is read, never after.
func TestCollectChangedKeepsBeatDuringRead(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 1, t0)
	later := t0.Add(time.Second)
	clear := onceAt(presence.HookRowRead, func() { beat(t, r, k, 2, later) })
	first := collect(r)
	require.True(t, clear(), "CollectChanged did not read a row")
	assert.EqualValues(t, 1, first[k].Leases, "the first collection read the row before the beat")

	second := collect(r)
	require.Contains(t, second, k, "a beat during CollectChanged was lost to the mirror")
	assert.EqualValues(t, 2, second[k].Leases)
	assert.Equal(t, later, second[k].LastHeartbeat)
}

// A beat that lands after PruneExpired found its consumer expired, but
// before it retired the entry, keeps the consumer: the retire is a
// compare-and-swap on the heartbeat that was classified.
func TestPruneLosesNoBeatBeforeRetire(t *testing.T) {
	r := presence.New(presence.WithCounters())
	k := key("q", "g", "c")
	beat(t, r, k, 0, t0.Add(-time.Hour))
	clear := onceAt(presence.HookBeforeRetire, func() { beat(t, r, k, 3, t0) })
	assert.Zero(t, r.PruneExpired(t0, ttl), "the consumer beat before it was retired")
	require.True(t, clear(), "PruneExpired did not try to retire")

	c, ok := r.Lookup(k, t0, ttl)
	require.True(t, ok, "a heartbeat was lost to a concurrent prune")
	assert.Equal(t, t0, c.LastHeartbeat)
	assert.EqualValues(t, 3, c.Leases)
	assert.Zero(t, r.Counters().Expired)
}

// A registration has put its entry in its group, where CollectChanged
// finds it, but not yet in its shard, when a mirror that failed to deliver
// the row calls MarkChanged. The mark must not be lost: MarkChanged waits
// for the registration, and the next collection passes the row again.
func TestMarkChangedDuringRegistration(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	collect(r) // nothing yet
	marked := make(chan bool, 1)
	var passed int
	clear := onceAt(presence.HookJoined, func() {
		// Under k's bucket lock: the mirror's MarkChanged runs on its own
		// goroutine, which the registration lets go when it returns.
		passed = r.CollectChanged(func(c presence.Consumer) {
			go func() { marked <- r.MarkChanged(c.Key) }()
		})
		// A MarkChanged that does not wait for the registration returns
		// at once, and finds nothing; give it the chance to (a shorter
		// chance under -short, which the mutation step runs per mutant).
		chance := time.Second
		if testing.Short() {
			chance = 100 * time.Millisecond
		}
		select {
		case ok := <-marked:
			marked <- ok
		case <-time.After(chance):
		}
	})
	beat(t, r, k, 0, t0)
	require.True(t, clear(), "the registration did not reach its pause point")
	require.Equal(t, 1, passed, "CollectChanged did not find the joined entry")
	assert.True(t, <-marked, "MarkChanged did not find the consumer")
	assert.Contains(t, collect(r), k, "the failed row's mark was lost")
}
