package presence_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Tests for behaviours that mutation testing found unchecked: each fails on
// a small change to the code that every other test let through.

// Removing the last consumer of one group leaves the queue's other groups
// in the index, and removing the last of all removes the queue.
func TestQueueKeepsOtherGroups(t *testing.T) {
	r := presence.New()
	a, b := key("q", "a", "only-a"), key("q", "b", "only-b")
	beat(t, r, a, 0, t0)
	beat(t, r, b, 0, t0)
	require.True(t, r.Deregister(a))
	assert.Equal(t, []string{"only-b"}, consumers(r.SnapshotQueue("q", t0, ttl)))
	groups, queues := r.IndexSizes()
	assert.Equal(t, 1, groups)
	assert.Equal(t, 1, queues)

	beat(t, r, a, 0, t0) // the group comes back into the same queue
	assert.Equal(t, []string{"only-a", "only-b"}, consumers(r.SnapshotQueue("q", t0, ttl)))

	require.True(t, r.Deregister(b))
	require.True(t, r.Deregister(a))
	assert.Empty(t, r.SnapshotQueue("q", t0, ttl))
	groups, queues = r.IndexSizes()
	assert.Zero(t, groups)
	assert.Zero(t, queues)
}

// Expired and Left are counted apart: two expire, one leaves.
func TestCountersTellExpiredFromLeft(t *testing.T) {
	r := presence.New(presence.WithCounters())
	for _, c := range []string{"x", "y"} {
		beat(t, r, key("q", "g", c), 0, t0.Add(-time.Hour))
	}
	beat(t, r, key("q", "g", "stays"), 0, t0)
	beat(t, r, key("q", "g", "leaves"), 0, t0)
	assert.Equal(t, 2, r.PruneExpired(t0, ttl))
	assert.True(t, r.Deregister(key("q", "g", "leaves")))
	assert.False(t, r.Deregister(key("q", "g", "leaves")), "a second Deregister counts nothing")

	// Restores count as registrations but not as heartbeats.
	require.NoError(t, r.Merge(presence.Consumer{Key: key("q", "g", "merged"), RegisteredAt: t0, LastHeartbeat: t0}))
	require.NoError(t, r.Merge(presence.Consumer{Key: key("q", "g", "stays"), RegisteredAt: t0, LastHeartbeat: t0}))

	c := r.Counters()
	assert.Equal(t, presence.Counters{Heartbeats: 4, Registrations: 5, Expired: 2, Left: 1}, c)
}

// Close unsubscribes: a per-request subscriber that closes leaves nothing
// behind in the registry, and the other subscribers keep theirs.
func TestSubscriptionCloseUnsubscribes(t *testing.T) {
	r := presence.New()
	keep := r.Subscribe(8)
	defer keep.Close()
	for i := 0; i < 100; i++ {
		s := r.Subscribe(1)
		require.Equal(t, 2, r.Subscribers())
		s.Close()
		s.Close()
	}
	assert.Equal(t, 1, r.Subscribers(), "closed subscriptions are still delivered to")
	a, b := r.Subscribe(8), r.Subscribe(8)
	a.Close()
	beat(t, r, key("q", "g", "c"), 0, t0)
	assert.Len(t, recv(keep), 1)
	assert.Len(t, recv(b), 1)
	b.Close()
	keep.Close()
	assert.Zero(t, r.Subscribers())
}

// Values outside the defined ones print as their number and never index
// past the name tables.
func TestUndefinedValuesDoNotPanic(t *testing.T) {
	assert.Equal(t, "State(3)", presence.State(3).String())
	assert.Equal(t, "State(255)", presence.State(255).String())
	for _, s := range []presence.State{3, 255} {
		b, err := s.MarshalText()
		assert.ErrorIs(t, err, presence.ErrInvalidState)
		assert.Nil(t, b)
	}
	b, err := presence.Expired.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "expired", string(b))
	for k, want := range map[presence.EventKind]string{0: "EventKind(0)", 6: "EventKind(6)", 255: "EventKind(255)", presence.EventLeft: "left"} {
		assert.Equal(t, want, k.String())
	}
}

// A Handle copies its key into one buffer; a consumer or group name longer
// than the other two together must come out whole.
func TestHandleWithLongConsumerName(t *testing.T) {
	r := presence.New()
	for _, k := range []presence.Key{
		key("q", "g", "a-consumer-name-much-longer-than-queue-and-group"),
		key("", "", "c"),
		key("queue", "group", ""),
		key("a-long-queue-name", "", "c"),
		key("q", "a-group-name-longer-than-queue-and-consumer", "c"),
	} {
		h := r.Handle(k)
		assert.Equal(t, k, h.Key())
		require.NoError(t, h.Heartbeat(2, t0))
		c, ok := r.Lookup(k, t0, ttl)
		require.True(t, ok, "%q", k)
		assert.Equal(t, k, c.Key)
		assert.Equal(t, k, r.Handle(k).Key(), "a Handle for a registered key")
	}
	assert.Equal(t, 5, r.Len())
}

// CollectChanged returns the number of rows it passed.
func TestCollectChangedCount(t *testing.T) {
	r := presence.New()
	for i := 0; i < 5; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	rows := 0
	assert.Equal(t, 5, r.CollectChanged(func(presence.Consumer) { rows++ }))
	assert.Equal(t, 5, rows)
	beat(t, r, key("q", "g", "1"), 0, t0.Add(time.Second))
	beat(t, r, key("q", "g", "2"), 0, t0.Add(time.Second))
	assert.Equal(t, 2, r.CollectChanged(func(presence.Consumer) {}))
	assert.Zero(t, r.CollectChanged(func(presence.Consumer) { t.Error("nothing changed") }))
}

// The error for consumers a limit refused says exactly how many.
func TestRestoreCountsRefusedConsumers(t *testing.T) {
	src := presence.New()
	for i := 0; i < 5; i++ {
		beat(t, src, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	data := checkpoint(t, src)
	r := presence.New(presence.WithMaxConsumers(2))
	_, err := r.ReadFrom(bytes.NewReader(data))
	require.Error(t, err)
	assert.Equal(t, "presence: 3 consumers not restored: presence: too many consumers", err.Error())
	assert.ErrorIs(t, err, presence.ErrTooManyConsumers)
}

// CollectDeleted returns the number of keys it passed.
func TestCollectDeletedCount(t *testing.T) {
	r := presence.New()
	assert.Zero(t, r.CollectDeleted(func(presence.Key) {}), "recording starts with the first call")
	for i := 0; i < 3; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	require.True(t, r.Deregister(key("q", "g", "0")))
	require.True(t, r.Deregister(key("q", "g", "2")))
	var keys []presence.Key
	assert.Equal(t, 2, r.CollectDeleted(func(k presence.Key) { keys = append(keys, k) }))
	assert.ElementsMatch(t, []presence.Key{key("q", "g", "0"), key("q", "g", "2")}, keys)
	assert.Zero(t, r.CollectDeleted(func(presence.Key) { t.Error("nothing was deregistered since") }))
}

// Save writes its temporary file next to Path, and Load removes stale ones
// from there, not from the working directory: both work while the working
// directory is gone.
func TestCheckpointerIgnoresWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	gone := filepath.Join(dir, "gone")
	require.NoError(t, os.Mkdir(gone, 0o700))
	t.Chdir(gone)
	require.NoError(t, os.Remove(gone))
	r := presence.New()
	populate(t, r)
	path := filepath.Join(dir, "presence.ckpt")
	require.NoError(t, (&presence.Checkpointer{Registry: r, Path: path}).Save())
	stale := path + ".tmp-12345" // left by a save that crashed
	require.NoError(t, os.WriteFile(stale, []byte("partial"), 0o600))
	r2 := presence.New()
	require.NoError(t, (&presence.Checkpointer{Registry: r2, Path: path}).Load())
	assert.Equal(t, r.Len(), r2.Len())
	assert.NoFileExists(t, stale, "Load leaves a stale temporary file next to Path")
}

// WithMaxClockStep sets the step beyond which an older beat corrects the
// stored one; zero or negative keeps DefaultMaxClockStep.
func TestWithMaxClockStep(t *testing.T) {
	for _, tc := range []struct {
		step      time.Duration
		corrected bool
	}{{time.Second, true}, {0, false}, {-time.Second, false}} {
		r := presence.New(presence.WithCounters(), presence.WithMaxClockStep(tc.step))
		k := key("q", "g", "c")
		beat(t, r, k, 0, t0)
		beat(t, r, k, 0, t0.Add(-2*time.Second)) // 2 s older: a correction only under a 1 s step
		c, _ := r.Lookup(k, t0, ttl)
		assert.Equal(t, tc.corrected, c.LastHeartbeat.Equal(t0.Add(-2*time.Second)), "step %v", tc.step)
		assert.Equal(t, tc.corrected, r.Counters().ClockSteps == 1, "step %v", tc.step)
	}
}

// A prune pass leaves the Sweeper's default interval at half the shortest
// TTL among the consumers it kept, whatever order it visits them in: not
// the first it met, nor the last.
func TestPruneKeepsShortestDeclaredTTL(t *testing.T) {
	r := presence.New()
	for _, c := range []struct {
		k   presence.Key
		ttl time.Duration
	}{
		{key("q", "a", "c"), 2 * time.Minute},
		{key("q", "b", "c"), 10 * time.Second},
		{key("q", "c", "c"), 5 * time.Minute},
		{key("r", "a", "c"), time.Minute},
	} {
		require.NoError(t, r.HeartbeatWithTTL(c.k, 0, c.ttl, t0))
	}
	assert.Zero(t, r.PruneExpired(t0, time.Hour))
	assert.Equal(t, 5*time.Second, presence.SweepEvery(r, time.Hour))
}

// A consumer that declares a TTL while a prune pass runs counts for the
// sweeper after the pass, but a longer one does not displace the shorter
// TTL of a consumer the pass kept.
func TestPruneKeepsShorterTTLThanDeclaredDuringPass(t *testing.T) {
	r := presence.New()
	require.NoError(t, r.HeartbeatWithTTL(key("q", "g", "kept"), 0, 10*time.Second, t0))
	beat(t, r, key("q", "g", "dead"), 0, t0.Add(-time.Hour))
	clear := onceAt(presence.HookBeforeRetire, func() {
		require.NoError(t, r.HeartbeatWithTTL(key("q", "h", "late"), 0, time.Minute, t0))
	})
	assert.Equal(t, 1, r.PruneExpired(t0, ttl))
	require.True(t, clear(), "the pass did not find the expired consumer")
	assert.Equal(t, 5*time.Second, presence.SweepEvery(r, time.Hour))

	// Once the short one is gone, the one declared during the pass is
	// the shortest.
	require.True(t, r.Deregister(key("q", "g", "kept")))
	assert.Zero(t, r.PruneExpired(t0, ttl))
	assert.Equal(t, 30*time.Second, presence.SweepEvery(r, time.Hour))
}
