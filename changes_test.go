package presence_test

import (
	"fmt"
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
