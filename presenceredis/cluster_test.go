package presenceredis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// The harness itself: three masters that split the slots, each with a
// replica in sync.
func TestClusterHarness(t *testing.T) {
	c := sharedCluster(t)
	ms, err := c.masters()
	require.NoError(t, err)
	assert.Len(t, ms, 3)
	for _, m := range ms {
		r, err := c.replicaOf(m.addr())
		require.NoError(t, err)
		assert.NotEqual(t, m.addr(), r.addr())
	}
	cc := c.client(t)
	require.NoError(t, cc.Set(context.Background(), "harness", "x", 0).Err())
	require.NoError(t, cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		return m.Ping(ctx).Err()
	}))
}

// keySlot agrees with Redis, and every bucket's tag lands on its slot.
func TestKeySlotAndBucketTags(t *testing.T) {
	c := sharedCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	for _, k := range []string{"", "a", "presence", "123456789", "\xff\x00"} {
		want, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		assert.EqualValues(t, want, keySlot(k), "%q", k)
	}
	tags := bucketTags()
	m := New(presence.New(), cc, Options{Prefix: "tags"})
	defer m.Close()
	for b := range Buckets {
		slot, err := cc.ClusterKeySlot(ctx, m.dirKey(b)).Result()
		require.NoError(t, err)
		require.EqualValues(t, bucketSlot(b), slot, "bucket %d, tag %q", b, tags[b])
	}
}

// fillGroups registers n consumers spread over groups groups and several
// queues, beating at at.
func fillGroups(t testing.TB, r *presence.Registry, n, groups int, at time.Time) []presence.Key {
	keys := make([]presence.Key, n)
	for i := range keys {
		g := i % groups
		keys[i] = key(fmt.Sprint("queue-", g%5), fmt.Sprint("group-", g), fmt.Sprint("consumer-", i))
		require.NoError(t, r.Heartbeat(keys[i], uint32(i%3), at))
	}
	return keys
}

// converged asserts that Redis holds exactly the registry: Snapshot and
// CountByGroup are equal, read with no error.
func converged(t *testing.T, m *Mirror, r *presence.Registry, now time.Time) {
	t.Helper()
	got, err := m.Snapshot(context.Background(), now, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(now, ttl), got)
	counts, err := m.CountByGroup(context.Background(), now, ttl)
	require.NoError(t, err)
	assert.Equal(t, r.CountByGroup(now, ttl), counts)
}

// A master is killed and restarted at once, empty, before its replica
// could take over (failover is disabled on the replica, as when a whole
// machine restarts); the replica then resyncs from it and is empty too.
// The next flush finds its buckets' loss markers gone and refills them.
func TestMasterRestartedEmptyIsRefilled(t *testing.T) {
	c := startCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	r := presence.New()
	fillGroups(t, r, 5000, 200, t0)
	m := New(r, cc, Options{})
	defer m.Close()
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 5000, st.Consumers)

	ms, err := c.masters()
	require.NoError(t, err)
	victim := ms[1]
	replica, err := c.replicaOf(victim.addr())
	require.NoError(t, err)
	rc := replica.client(t)
	require.NoError(t, rc.ConfigSet(ctx, "cluster-replica-no-failover", "yes").Err())
	vc := victim.client(t)
	before, err := vc.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Positive(t, before, "the victim holds part of the data")

	victim.kill()
	require.NoError(t, victim.start())
	_, err = c.waitOK(30 * time.Second)
	require.NoError(t, err)
	after, err := vc.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, after, "the victim came back empty")

	// The first flush that succeeds refills it; with nothing changed in
	// the registry, only the lost buckets' consumers are sent.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err = m.Flush(ctx)
		if err == nil || time.Now().After(deadline) {
			break
		}
		t.Logf("flush after the restart: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Logf("refill: %+v", st)
	assert.Positive(t, st.Lost)
	assert.Less(t, st.Consumers, 5000, "only the lost buckets are resent")
	assert.Positive(t, st.Consumers)
	converged(t, m, r, t0)
}

// flushLog records Run's flushes with their times.
type flushLog struct {
	mu  sync.Mutex
	evs []flushEvent
}

type flushEvent struct {
	at  time.Time
	st  FlushStats
	err error
}

func (l *flushLog) add(st FlushStats, err error) {
	l.mu.Lock()
	l.evs = append(l.evs, flushEvent{time.Now(), st, err})
	l.mu.Unlock()
}

func (l *flushLog) events() []flushEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// beatAll makes every consumer beat about every 20 ms, on a clock that
// starts at t0 and follows the wall clock, until stop is closed; it
// returns the last time it used.
func beatAll(t *testing.T, r *presence.Registry, keys []presence.Key, stop chan struct{}) func() time.Time {
	var last atomic.Int64
	last.Store(t0.UnixNano())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			now := t0.Add(time.Since(start))
			for j, k := range keys {
				if err := r.Heartbeat(k, uint32((i+j)%4), now); err != nil {
					t.Error(err)
					return
				}
			}
			last.Store(now.UnixNano())
		}
	}()
	return func() time.Time { <-done; return time.Unix(0, last.Load()).UTC() }
}

// A master is SIGKILLed while the mirror flushes every second under
// steady heartbeats. While it is down the other masters keep being
// written and read (partial flushes and reads, never empty ones); its
// replica takes over; the mirror learns the new slot map after its first
// failed flush, so the second flush after cluster_state:ok at the latest
// succeeds; and Redis converges to the registry with nothing lost, even if
// the replica missed the last writes before the kill.
func TestMasterKilledFailsOver(t *testing.T) {
	c := startCluster(t)
	cc := c.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := presence.New()
	keys := fillGroups(t, r, 5000, 200, t0)
	m := New(r, cc, Options{})
	defer m.Close()
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	var log flushLog
	m.onFlush = log.add
	stop := make(chan struct{})
	lastBeat := beatAll(t, r, keys, stop)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	time.Sleep(2500 * time.Millisecond) // a few good flushes first

	ms, err := c.masters()
	require.NoError(t, err)
	victim := ms[0]
	killed := time.Now()
	victim.kill()

	// Reads while it is down return the live masters' rows.
	var partialRead bool
	for !partialRead && time.Since(killed) < nodeTimeout {
		rows, err := m.Snapshot(ctx, t0, ttl)
		if errors.Is(err, ErrPartial) {
			partialRead = true
			assert.NotEmpty(t, rows, "the live masters' rows")
			assert.Less(t, len(rows), len(keys))
			t.Logf("read while down: %d rows; %v", len(rows), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.True(t, partialRead, "a read while the master is down is partial, not empty")

	ok, err := c.waitFailover(victim.addr(), 30*time.Second)
	require.NoError(t, err)
	time.Sleep(3500 * time.Millisecond) // a few flushes after the failover
	close(stop)
	now := lastBeat()
	cancel()
	<-ran

	// The timeline.
	var firstOK time.Time
	afterOK, partial := 0, 0
	for _, e := range log.events() {
		if e.at.Before(killed) {
			continue
		}
		t.Logf("%+6.2fs  took=%-6v consumers=%-5d lost=%-3d failed=%-3d err=%.80v", e.at.Sub(killed).Seconds(),
			e.st.Took.Round(time.Millisecond), e.st.Consumers, e.st.Lost, e.st.Failed, e.err)
		if errors.Is(e.err, ErrPartial) {
			partial++
		}
		if e.at.After(ok) && firstOK.IsZero() {
			afterOK++
			if e.err == nil {
				firstOK = e.at
			}
		}
	}
	t.Logf("killed at 0s; cluster_state:ok at %.2fs; first good flush after it at %.2fs (%.2fs later, flush %d after ok)",
		ok.Sub(killed).Seconds(), firstOK.Sub(killed).Seconds(), firstOK.Sub(ok).Seconds(), afterOK)
	assert.Positive(t, partial, "the live masters kept being written while one was down")
	require.False(t, firstOK.IsZero(), "a flush succeeded after the failover")
	assert.LessOrEqual(t, afterOK, 2, "the second flush after cluster_state:ok succeeds at the latest")

	_, err = m.Flush(context.Background())
	require.NoError(t, err)
	converged(t, m, r, now)
}
