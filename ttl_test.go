package presence_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/mutexreg"
)

// A registry serving a real-time group (1 s session timeout) and a batch
// group (5 min), with reads passing the 30 s default: each consumer is
// judged by its own budget.
var (
	realtime = key("orders", "realtime", "rt-1")
	batch    = key("orders", "batch", "nightly")
	plain    = key("orders", "legacy", "old") // declares nothing: the read's TTL
)

const (
	rtTTL    = time.Second
	batchTTL = 5 * time.Minute
)

func mixedRegistry(t *testing.T, opts ...presence.Option) *presence.Registry {
	t.Helper()
	r := presence.New(opts...)
	require.NoError(t, r.HeartbeatWithTTL(realtime, 1, rtTTL, t0))
	require.NoError(t, r.Handle(batch).HeartbeatWithTTL(1, batchTTL, t0))
	beat(t, r, plain, 1, t0)
	return r
}

// states returns each consumer's state and TTL in Snapshot at now.
func states(r *presence.Registry, now time.Time) map[string]presence.Consumer {
	out := map[string]presence.Consumer{}
	for _, c := range r.Snapshot(now, presence.DefaultTTL) {
		out[c.Consumer] = c
	}
	return out
}

func TestDeclaredTTLClassifiesEachByItsOwn(t *testing.T) {
	r := mixedRegistry(t)
	type want struct{ rt, batch, plain presence.State }
	for _, tc := range []struct {
		after time.Duration
		want  want
	}{
		{0, want{presence.Active, presence.Active, presence.Active}},
		{rtTTL, want{presence.Active, presence.Active, presence.Active}},
		{rtTTL + 1, want{presence.Stale, presence.Active, presence.Active}},
		{2*rtTTL + 1, want{presence.Expired, presence.Active, presence.Active}},
		{31 * time.Second, want{presence.Expired, presence.Active, presence.Stale}},
		{61 * time.Second, want{presence.Expired, presence.Active, presence.Expired}},
		{batchTTL + 1, want{presence.Expired, presence.Stale, presence.Expired}},
		{2*batchTTL + 1, want{presence.Expired, presence.Expired, presence.Expired}},
	} {
		now := t0.Add(tc.after)
		rows := states(r, now)
		got := want{rows["rt-1"].State, rows["nightly"].State, rows["old"].State}
		assert.Equal(t, tc.want, got, "after %v", tc.after)
		assert.Equal(t, rtTTL, rows["rt-1"].TTL)
		assert.Equal(t, batchTTL, rows["nightly"].TTL)
		assert.Zero(t, rows["old"].TTL, "a consumer that declared nothing reports 0: the read's TTL")

		// Every view agrees with Snapshot, row for row and count for count.
		var stats presence.Counts
		groups := map[presence.GroupKey]presence.Counts{}
		active := map[presence.GroupKey]int{}
		for _, c := range r.Snapshot(now, presence.DefaultTTL) {
			stats.Add(c.State)
			g := presence.GroupKey{Queue: c.Queue, Group: c.Group}
			n := groups[g]
			n.Add(c.State)
			groups[g] = n
			if c.State == presence.Active {
				active[g]++
			}
			l, ok := r.Lookup(c.Key, now, presence.DefaultTTL)
			require.True(t, ok)
			assert.Equal(t, c, l)
			assert.Equal(t, []presence.Consumer{c}, r.SnapshotGroup(g, now, presence.DefaultTTL))
		}
		assert.Equal(t, stats, r.Stats(now, presence.DefaultTTL), "after %v", tc.after)
		assert.Equal(t, groups, r.CountByGroup(now, presence.DefaultTTL), "after %v", tc.after)
		assert.Equal(t, active, r.CountActiveByGroup(now, presence.DefaultTTL), "after %v", tc.after)
		assert.Equal(t, r.Snapshot(now, presence.DefaultTTL), r.SnapshotQueue("orders", now, presence.DefaultTTL))
		var all []presence.Consumer
		for c := range r.All(now, presence.DefaultTTL) {
			all = append(all, c)
		}
		assert.ElementsMatch(t, r.Snapshot(now, presence.DefaultTTL), all)
	}
}

func TestDeclaredTTLPrunesAndEventsEachByItsOwn(t *testing.T) {
	r := mixedRegistry(t)
	sub := r.Subscribe(0)
	defer sub.Close()
	sweep := func(after time.Duration) int { return r.PruneExpired(t0.Add(after), presence.DefaultTTL) }

	assert.Zero(t, sweep(rtTTL+time.Millisecond))
	assert.Equal(t, []presence.Event{ev(presence.EventStale, realtime, t0.Add(rtTTL+time.Millisecond))}, recv(sub))
	assert.Equal(t, 1, sweep(2*rtTTL+time.Millisecond), "the real-time consumer expires within its own 2 s")
	assert.Equal(t, []presence.Event{ev(presence.EventExpired, realtime, t0.Add(2*rtTTL+time.Millisecond))}, recv(sub))

	// A read TTL shorter than the batch's does not touch it; the plain one
	// goes by the read's.
	assert.Equal(t, 1, r.PruneExpired(t0.Add(10*time.Second), time.Second))
	assert.Equal(t, []presence.Event{ev(presence.EventExpired, plain, t0.Add(10*time.Second))}, recv(sub))
	assert.Zero(t, sweep(batchTTL))
	assert.Empty(t, recv(sub))
	assert.Zero(t, sweep(batchTTL+time.Second))
	assert.Equal(t, []presence.Event{ev(presence.EventStale, batch, t0.Add(batchTTL+time.Second))}, recv(sub))
	assert.Equal(t, 1, sweep(2*batchTTL+time.Second))
	assert.Equal(t, []presence.Event{ev(presence.EventExpired, batch, t0.Add(2*batchTTL+time.Second))}, recv(sub))
	assert.Zero(t, r.Len())
}

func TestDeclaredTTLNewestWins(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	ttlOf := func(now time.Time) time.Duration {
		c, ok := r.Lookup(k, now, presence.DefaultTTL)
		require.True(t, ok)
		return c.TTL
	}
	require.NoError(t, r.HeartbeatWithTTL(k, 0, time.Minute, t0))
	assert.Equal(t, time.Minute, ttlOf(t0))
	beat(t, r, k, 0, t0.Add(time.Second)) // declares nothing: keeps it
	assert.Equal(t, time.Minute, ttlOf(t0))
	require.NoError(t, r.HeartbeatWithTTL(k, 0, 0, t0.Add(2*time.Second)))  // 0 declares nothing
	require.NoError(t, r.HeartbeatWithTTL(k, 0, -5, t0.Add(2*time.Second))) // nor does a negative one
	assert.Equal(t, time.Minute, ttlOf(t0))
	require.NoError(t, r.HeartbeatWithTTL(k, 0, time.Hour, t0.Add(time.Second))) // stale news: ignored
	assert.Equal(t, time.Minute, ttlOf(t0))
	h := r.Handle(k)
	require.NoError(t, h.HeartbeatWithTTL(0, time.Hour, t0.Add(3*time.Second)))
	assert.Equal(t, time.Hour, ttlOf(t0))
	require.NoError(t, h.Heartbeat(0, t0.Add(4*time.Second)))
	assert.Equal(t, time.Hour, ttlOf(t0))

	// A consumer that comes back after it was removed starts afresh.
	require.True(t, r.Deregister(k))
	beat(t, r, k, 0, t0.Add(5*time.Second))
	assert.Zero(t, ttlOf(t0))

	var nilHandle *presence.Handle
	assert.ErrorIs(t, nilHandle.HeartbeatWithTTL(0, time.Second, t0), presence.ErrNilHandle)
	assert.ErrorIs(t, r.HeartbeatWithTTL(k, 0, time.Second, time.Time{}), presence.ErrZeroTime)
}

func TestTTLBoundsClamp(t *testing.T) {
	for _, tc := range []struct {
		lo, hi, declared, want time.Duration
	}{
		{time.Second, time.Minute, time.Millisecond, time.Second},
		{time.Second, time.Minute, time.Hour, time.Minute},
		{time.Second, time.Minute, 10 * time.Second, 10 * time.Second},
		{0, time.Minute, 2 * time.Millisecond, 2 * time.Millisecond}, // no lower bound
		{time.Second, 0, 1000 * time.Hour, 1000 * time.Hour},         // no upper bound
		{-time.Second, -1, time.Millisecond, time.Millisecond},       // negative bounds are none
		{0, 0, time.Nanosecond, time.Millisecond},                    // kept to the millisecond, rounded up
		{0, 0, 1500 * time.Microsecond, 2 * time.Millisecond},
		{0, 0, math.MaxInt64, presence.MaxDeclaredTTL}, // at most MaxDeclaredTTL
		{time.Microsecond, time.Microsecond, time.Hour, time.Millisecond},
		{time.Minute, time.Second, time.Hour, time.Minute}, // hi below lo is lo
		{time.Minute, time.Second, 0, 0},                   // declaring nothing is not clamped
	} {
		r := presence.New(presence.WithTTLBounds(tc.lo, tc.hi))
		ref := mutexreg.New(0)
		ref.SetTTLBounds(tc.lo, tc.hi)
		k := key("q", "g", "c")
		require.NoError(t, r.HeartbeatWithTTL(k, 0, tc.declared, t0))
		require.NoError(t, ref.HeartbeatWithTTL(k, 0, tc.declared, t0))
		c, _ := r.Lookup(k, t0, presence.DefaultTTL)
		assert.Equal(t, tc.want, c.TTL, "bounds [%v, %v], declared %v", tc.lo, tc.hi, tc.declared)
		assert.Equal(t, ref.Snapshot(t0, presence.DefaultTTL), r.Snapshot(t0, presence.DefaultTTL))

		// Merged rows are clamped alike.
		m := key("q", "g", "merged")
		require.NoError(t, r.Merge(presence.Consumer{Key: m, RegisteredAt: t0, LastHeartbeat: t0, TTL: tc.declared}))
		c, _ = r.Lookup(m, t0, presence.DefaultTTL)
		assert.Equal(t, tc.want, c.TTL, "merged: bounds [%v, %v], declared %v", tc.lo, tc.hi, tc.declared)
	}
}

func TestDeclaredTTLRefreshAllocatesNothing(t *testing.T) {
	r := presence.New(presence.WithTTLBounds(time.Second, time.Hour))
	k := key("orders", "workers", "w-1")
	h := r.Handle(k)
	require.NoError(t, r.HeartbeatWithTTL(k, 0, time.Minute, t0))
	now := t0
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = r.HeartbeatWithTTL(k, 1, time.Minute, now)
	}), "refresh by key")
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = h.HeartbeatWithTTL(1, time.Minute, now)
	}), "refresh by handle")
}

func TestMergeCarriesDeclaredTTL(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	require.NoError(t, r.HeartbeatWithTTL(k, 0, time.Minute, t0.Add(time.Second)))
	// An older row's declaration is older news.
	require.NoError(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: t0, LastHeartbeat: t0, TTL: time.Hour}))
	c, _ := r.Lookup(k, t0, presence.DefaultTTL)
	assert.Equal(t, time.Minute, c.TTL)
	// A newer row that declares nothing keeps the declaration; one that
	// declares replaces it.
	require.NoError(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: t0, LastHeartbeat: t0.Add(2 * time.Second)}))
	c, _ = r.Lookup(k, t0, presence.DefaultTTL)
	assert.Equal(t, time.Minute, c.TTL)
	require.NoError(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: t0, LastHeartbeat: t0.Add(3 * time.Second), TTL: time.Hour}))
	c, _ = r.Lookup(k, t0, presence.DefaultTTL)
	assert.Equal(t, time.Hour, c.TTL)

	// CollectChanged passes it on, so a second registry merging the rows
	// judges the consumer alike.
	other := presence.New()
	r.CollectChanged(func(c presence.Consumer) { require.NoError(t, other.Merge(c)) })
	now := t0.Add(time.Hour)
	assert.Equal(t, r.Snapshot(now, time.Second), other.Snapshot(now, time.Second))
	assert.Equal(t, presence.Active, other.Snapshot(now, time.Second)[0].State)
}

func TestSweeperServesShortestTTL(t *testing.T) {
	r := presence.New(presence.WithTTLBounds(200*time.Millisecond, 0))
	assert.Equal(t, 15*time.Second, presence.SweepEvery(r, 30*time.Second))
	require.NoError(t, r.HeartbeatWithTTL(batch, 0, batchTTL, t0))
	assert.Equal(t, 15*time.Second, presence.SweepEvery(r, 30*time.Second), "a longer declared TTL changes nothing")
	require.NoError(t, r.HeartbeatWithTTL(realtime, 0, rtTTL, t0))
	assert.Equal(t, rtTTL/2, presence.SweepEvery(r, 30*time.Second))
	require.NoError(t, r.HeartbeatWithTTL(realtime, 0, time.Nanosecond, t0.Add(1)))
	assert.Equal(t, 100*time.Millisecond, presence.SweepEvery(r, 30*time.Second), "bounded by the registry's minimum")
	assert.Equal(t, 50*time.Millisecond, presence.SweepEvery(r, 100*time.Millisecond), "the sweeper's own TTL, if shorter")

	// The real-time consumer leaves: after the next pass the batch one's
	// 5 min is the shortest declared, longer than the sweeper's 30 s.
	require.True(t, r.Deregister(realtime))
	assert.Equal(t, 100*time.Millisecond, presence.SweepEvery(r, 30*time.Second), "until a pass")
	r.PruneExpired(t0, 30*time.Second)
	assert.Equal(t, 15*time.Second, presence.SweepEvery(r, 30*time.Second))
	assert.Equal(t, batchTTL/2, presence.SweepEvery(r, time.Hour))
	require.True(t, r.Deregister(batch))
	r.PruneExpired(t0, 30*time.Second)
	assert.Equal(t, 30*time.Minute, presence.SweepEvery(r, time.Hour), "none declared")
}

// The reference model follows declared TTLs: a mixed registry, driven by
// one sequence of beats, prunes and reads, matches it at every step.
func TestDeclaredTTLMatchesReference(t *testing.T) {
	r := presence.New(presence.WithTTLBounds(time.Second, 10*time.Minute))
	ref := mutexreg.New(0)
	ref.SetTTLBounds(time.Second, 10*time.Minute)
	keys := []presence.Key{realtime, batch, plain, key("orders", "realtime", "rt-2")}
	declared := []time.Duration{0, -1, time.Millisecond, rtTTL, 3 * time.Second, batchTTL, time.Hour}
	now := t0
	for i := range 2000 {
		k := keys[i*7%len(keys)]
		switch i % 5 {
		case 0, 1, 2:
			d := declared[i*13%len(declared)]
			now = now.Add(time.Duration(i%11) * 300 * time.Millisecond)
			require.NoError(t, r.HeartbeatWithTTL(k, uint32(i%3), d, now))
			require.NoError(t, ref.HeartbeatWithTTL(k, uint32(i%3), d, now))
		case 3:
			now = now.Add(time.Duration(i%17) * time.Second)
			ttl := declared[i%len(declared)]
			require.Equal(t, ref.PruneExpired(now, ttl), r.PruneExpired(now, ttl), "step %d", i)
		case 4:
			ttl := declared[i%len(declared)]
			require.Equal(t, ref.Snapshot(now, ttl), r.Snapshot(now, ttl), "step %d", i)
			require.Equal(t, ref.CountByGroup(now, ttl), r.CountByGroup(now, ttl), "step %d", i)
			require.Equal(t, ref.Stats(now, ttl), r.Stats(now, ttl), "step %d", i)
		}
	}
}

// A checkpoint keeps declared TTLs: the restored registry judges, prunes
// and events each consumer by its own budget, as the original does.
func TestCheckpointKeepsDeclaredTTL(t *testing.T) {
	r := mixedRegistry(t)
	data := checkpoint(t, r)
	require.Equal(t, byte(2), data[8], "checkpoints are written in format version 2")
	restored := presence.New()
	_, err := restored.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	for _, after := range []time.Duration{0, rtTTL + 1, 2*rtTTL + 1, 31 * time.Second, batchTTL + 1, 2*batchTTL + 1} {
		now := t0.Add(after)
		assert.Equal(t, r.Snapshot(now, presence.DefaultTTL), restored.Snapshot(now, presence.DefaultTTL), "after %v", after)
	}
	sub := restored.Subscribe(0)
	defer sub.Close()
	assert.Equal(t, 1, restored.PruneExpired(t0.Add(2*rtTTL+1), presence.DefaultTTL))
	assert.Equal(t, []presence.Event{ev(presence.EventExpired, realtime, t0.Add(2*rtTTL+1))}, recv(sub))

	// Restoring into a registry with bounds clamps the declarations.
	bounded := presence.New(presence.WithTTLBounds(2*time.Second, time.Minute))
	_, err = bounded.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	rows := states(bounded, t0)
	assert.Equal(t, 2*time.Second, rows["rt-1"].TTL)
	assert.Equal(t, time.Minute, rows["nightly"].TTL)
	assert.Zero(t, rows["old"].TTL)
}

// testdata/checkpoint-v1.bin was written by the registry before consumers
// could declare a TTL (format version 1, commit 804c8a3). It still loads,
// every consumer declaring none.
func TestCheckpointVersion1StillLoads(t *testing.T) {
	data, err := os.ReadFile("testdata/checkpoint-v1.bin")
	require.NoError(t, err)
	require.Equal(t, byte(1), data[8])
	r := presence.New()
	n, err := r.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	at := time.Unix(1_700_000_000, 0).UTC()
	assert.Equal(t, []presence.Consumer{
		{Key: key("", "\x00", "\xff"), RegisteredAt: at.Add(-time.Second), LastHeartbeat: at.Add(-time.Second), Age: time.Second},
		{Key: key("orders", "batch", "nightly"), RegisteredAt: at.Add(-time.Minute), LastHeartbeat: at, LastActive: at, Leases: 1},
		{Key: key("orders", "realtime", "rt-1"), RegisteredAt: at, LastHeartbeat: at, LastActive: at, Leases: 2},
	}, r.Snapshot(at, presence.DefaultTTL))
}

// Beats that declare a long TTL race with prunes and snapshots that pass a
// tiny one: a consumer that declared 1 h is never judged by the read's
// 1 ms, so it is never pruned (its RegisteredAt never changes) and every
// row shows it Active under 1 h, while the consumers that declared nothing
// are pruned and come back all along. Two handles of one consumer that
// declare two budgets end with one of them.
func TestDeclaredTTLUnderConcurrentPrunes(t *testing.T) {
	const consumers = 32
	rounds := scale(2000)
	r := presence.New(presence.WithShards(4))
	var long, plainKeys []presence.Key
	for i := range consumers {
		long = append(long, key("q", "long", fmt.Sprint(i)))
		plainKeys = append(plainKeys, key("q", "plain", fmt.Sprint(i)))
	}
	for _, k := range long {
		require.NoError(t, r.HeartbeatWithTTL(k, 0, time.Hour, t0))
	}
	flip := key("q", "flip", "c")
	far := t0.Add(10 * time.Second) // the readers' now: 10 s after every beat
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 16)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := r.Handle(flip)
			for i := range rounds {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				for j := range consumers {
					_ = r.HeartbeatWithTTL(long[j], uint32(i), time.Hour, now)
					_ = r.Heartbeat(plainKeys[j], uint32(i), now)
				}
				_ = h.HeartbeatWithTTL(1, time.Duration(w+1)*time.Minute, now)
			}
		}()
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.PruneExpired(far, time.Millisecond)
		}
	}()
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range r.Snapshot(far, time.Millisecond) {
				if c.Group == "long" && (c.State != presence.Active || c.TTL != time.Hour || !c.RegisteredAt.Equal(t0)) {
					errs <- fmt.Errorf("row %+v: a consumer that declared 1 h judged otherwise, or pruned", c)
					return
				}
				if c.Group == "plain" && c.TTL != 0 {
					errs <- fmt.Errorf("row %+v: a consumer that declared nothing has a TTL", c)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, k := range long {
		c, ok := r.Lookup(k, far, time.Millisecond)
		require.True(t, ok, "%v was pruned", k)
		assert.Equal(t, t0, c.RegisteredAt, "%v was pruned and registered again", k)
		assert.Equal(t, time.Hour, c.TTL)
		assert.Equal(t, t0.Add(time.Duration(rounds-1)*time.Millisecond), c.LastHeartbeat, "a heartbeat of %v was lost", k)
	}
	c, ok := r.Lookup(flip, far, time.Millisecond)
	require.True(t, ok)
	assert.Contains(t, []time.Duration{time.Minute, 2 * time.Minute}, c.TTL)
}
