package presence_test

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

func collect(r *presence.Registry) map[presence.Key]presence.Consumer {
	out := map[presence.Key]presence.Consumer{}
	r.CollectChanged(func(c presence.Consumer) { out[c.Key] = c })
	return out
}

func TestCollectChanged(t *testing.T) {
	r := presence.New()
	for i := 0; i < 10; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	assert.Len(t, collect(r), 10, "everything is new the first time")
	assert.Empty(t, collect(r), "nothing changed since")

	beat(t, r, key("q", "g", "3"), 2, t0.Add(time.Second))
	beat(t, r, key("q", "g", "4"), 0, t0)                   // same time, same leases: still a write
	beat(t, r, key("q", "g", "5"), 9, t0.Add(-time.Second)) // stale: no change
	got := collect(r)
	assert.Len(t, got, 2)
	assert.EqualValues(t, 2, got[key("q", "g", "3")].Leases)

	assert.True(t, r.MarkChanged(key("q", "g", "7")))
	assert.False(t, r.MarkChanged(key("q", "g", "nope")))
	assert.Len(t, collect(r), 1)
	r.MarkAllChanged()
	assert.Len(t, collect(r), 10)
}

// Collecting while heartbeats land never misses the last one: after the
// writers stop, one more collection yields every consumer's final beat
// unless an earlier collection already did.
func TestCollectChangedMissesNothing(t *testing.T) {
	r := presence.New()
	n := 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	seen := make([]time.Time, n)
	var mu sync.Mutex
	record := func(c presence.Consumer) {
		var i int
		fmt.Sscan(c.Consumer, &i)
		mu.Lock()
		if c.LastHeartbeat.After(seen[i]) {
			seen[i] = c.LastHeartbeat
		}
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				r.CollectChanged(record)
			}
		}
	}()
	var writers sync.WaitGroup
	for w := 0; w < 2; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; i < scale(20000); i++ {
				c := (i*2 + w) % n
				at := t0.Add(time.Duration(i))
				_ = r.Heartbeat(key("q", "g", fmt.Sprint(c)), 0, at)
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	r.CollectChanged(record)
	for c := 0; c < n; c++ {
		row, ok := r.Lookup(key("q", "g", fmt.Sprint(c)), t0, ttl)
		require.True(t, ok)
		assert.True(t, seen[c].Equal(row.LastHeartbeat), "consumer %d: collected %v, final %v", c, seen[c], row.LastHeartbeat)
	}
}

func TestMerge(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 1, t0)
	require.NoError(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: t0.Add(-time.Hour), LastHeartbeat: t0.Add(-time.Minute), Leases: 7}))
	c, _ := r.Lookup(k, t0, ttl)
	assert.True(t, c.RegisteredAt.Equal(t0.Add(-time.Hour)))
	assert.True(t, c.LastHeartbeat.Equal(t0), "an older row does not move the heartbeat back")
	assert.EqualValues(t, 1, c.Leases)

	require.NoError(t, r.Merge(presence.Consumer{Key: key("q", "g", "new"), RegisteredAt: t0, LastHeartbeat: t0, LastActive: t0, Leases: 2}))
	c, ok := r.Lookup(key("q", "g", "new"), t0, ttl)
	require.True(t, ok)
	assert.True(t, c.LastActive.Equal(t0))

	err := r.Merge(presence.Consumer{Key: k, RegisteredAt: t0.Add(time.Hour), LastHeartbeat: t0})
	assert.ErrorIs(t, err, presence.ErrBadCheckpoint)
}

func collectDeleted(r *presence.Registry) map[presence.Key]bool {
	out := map[presence.Key]bool{}
	r.CollectDeleted(func(k presence.Key) { out[k] = true })
	return out
}

func TestCollectDeleted(t *testing.T) {
	r := presence.New()
	for i := 0; i < 10; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	require.True(t, r.Deregister(key("q", "g", "0")))
	assert.Empty(t, collectDeleted(r), "nothing is recorded before the first collection")

	for i := 1; i < 6; i++ {
		require.True(t, r.Deregister(key("q", "g", fmt.Sprint(i))))
	}
	beat(t, r, key("q", "g", "5"), 0, t0.Add(time.Second)) // came back
	assert.False(t, r.Deregister(key("q", "g", "absent")))
	collect(r)
	got := collectDeleted(r)
	assert.Equal(t, map[presence.Key]bool{
		key("q", "g", "1"): true, key("q", "g", "2"): true, key("q", "g", "3"): true,
		key("q", "g", "4"): true, key("q", "g", "5"): true,
	}, got)
	assert.Empty(t, collectDeleted(r), "collected once")
	assert.Equal(t, []presence.Key{key("q", "g", "5")}, slices.Collect(maps.Keys(collect(r))),
		"the one that came back is written again, after its delete")

	r.MarkDeleted(key("q", "g", "1")) // a failed delete is recorded again
	assert.Equal(t, map[presence.Key]bool{key("q", "g", "1"): true}, collectDeleted(r))

	// A flood between two collections: all of them, nothing dropped.
	for i := 0; i < 20000; i++ {
		beat(t, r, key("flood", "g", fmt.Sprint(i)), 0, t0)
	}
	collectDeleted(r)
	for i := 0; i < 20000; i++ {
		r.Deregister(key("flood", "g", fmt.Sprint(i)))
	}
	assert.Len(t, collectDeleted(r), 20000)
	assert.Zero(t, r.DeletionRecords())

	// Records are bounded: one per key, however often it leaves.
	for i := 0; i < 1000; i++ {
		beat(t, r, key("churn", "g", fmt.Sprint(i)), 0, t0)
	}
	for round := 0; round < 3; round++ {
		for i := 0; i < 1000; i++ {
			r.Deregister(key("churn", "g", fmt.Sprint(i)))
			beat(t, r, key("churn", "g", fmt.Sprint(i)), 0, t0)
		}
	}
	assert.Equal(t, 1000, r.DeletionRecords())
	assert.Len(t, collectDeleted(r), 1000)
	assert.Zero(t, r.DeletionRecords())
}

// A mirror collects deletions, then changes, in rounds, while writers
// deregister and register their consumers again and again; some of its
// deliveries fail and are marked again. After the writers stop and one
// more round, its copy holds exactly the consumers whose last operation
// was a heartbeat: no deregistration or registration is lost.
func TestDeletedRacingRegistrations(t *testing.T) {
	forHashes(t, testDeletedRacingRegistrations)
}

func testDeletedRacingRegistrations(t *testing.T, hash ...presence.Option) {
	r := presence.New(hash...)
	const writers, perWriter = 4, 64
	ops := scale(20000)
	var mu sync.Mutex
	copyOf := map[presence.Key]bool{} // the mirror's copy: present or not
	round := func(fail bool) {
		i := 0
		var dels []presence.Key
		r.CollectDeleted(func(k presence.Key) { dels = append(dels, k) })
		mu.Lock()
		defer mu.Unlock()
		for _, k := range dels {
			if i++; fail && i%3 == 0 {
				r.MarkDeleted(k)
				continue
			}
			delete(copyOf, k)
		}
		r.CollectChanged(func(c presence.Consumer) {
			if i++; fail && i%5 == 0 {
				r.MarkChanged(c.Key)
				return
			}
			copyOf[c.Key] = true
		})
	}
	round(false) // starts the recording

	stop := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for {
			select {
			case <-stop:
				return
			default:
				round(true)
			}
		}
	}()
	last := make([][]bool, writers) // per consumer: is its last op a heartbeat
	var wg sync.WaitGroup
	for w := range writers {
		last[w] = make([]bool, perWriter)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ops; i++ {
				c := (i * 7) % perWriter
				k := key("q", fmt.Sprint("g", w%2), fmt.Sprint(w, "-", c))
				if i%3 == 0 {
					r.Deregister(k)
					last[w][c] = false
					continue
				}
				if err := r.Heartbeat(k, 0, t0.Add(time.Duration(i))); err != nil {
					t.Error(err)
				}
				last[w][c] = true
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-collected
	round(false)

	for w := range writers {
		for c := range perWriter {
			k := key("q", fmt.Sprint("g", w%2), fmt.Sprint(w, "-", c))
			_, registered := r.Lookup(k, t0, ttl)
			assert.Equal(t, last[w][c], registered, "%v in the registry", k)
			assert.Equal(t, last[w][c], copyOf[k], "%v in the mirror's copy", k)
		}
	}
}

// At computes a row's Age and State as the registry's reads do, clamping
// the age at both ends.
func TestConsumerAt(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 0, t0)
	for _, now := range []time.Time{t0.Add(-time.Hour), t0, t0.Add(ttl), t0.Add(ttl + 1), t0.Add(3 * ttl), time.Unix(0, math.MaxInt64)} {
		want, ok := r.Lookup(k, now, ttl)
		require.True(t, ok)
		got := presence.Consumer{Key: k, LastHeartbeat: t0}.At(now, ttl)
		assert.Equal(t, want.Age, got.Age, "%v", now)
		assert.Equal(t, want.State, got.State, "%v", now)
	}
	old := presence.Consumer{LastHeartbeat: time.Unix(0, math.MinInt64+1)}.At(time.Unix(0, math.MaxInt64), ttl)
	assert.Equal(t, time.Duration(math.MaxInt64), old.Age, "saturates")
	assert.Equal(t, presence.Expired, old.State)
}
