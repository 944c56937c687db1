package presence

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence/internal/entry"
)

// The window must classify exactly as classifyAt(judge(...)) does, at the
// boundaries of each state and at the ends of the int64 range, where its
// bounds saturate.
func TestWindowMatchesClassifyAt(t *testing.T) {
	const s = int64(time.Second)
	times := []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt64 + s, -s, -1, 0, 1, s, 1e18, math.MaxInt64 - s, math.MaxInt64 - 1, math.MaxInt64}
	ttls := []time.Duration{math.MinInt64, -1, 0, 1, time.Second, math.MaxInt64/2 - 1, math.MaxInt64 / 2, math.MaxInt64/2 + 1, math.MaxInt64 - 1, math.MaxInt64}
	declared := []time.Duration{0, entry.TTLUnit, time.Second}
	for _, now := range times {
		for _, ttl := range ttls {
			w := newWindow(now, ttl)
			// Heartbeats at every boundary of this window, and around them.
			hbs := append([]int64{}, times...)
			for _, b := range []int64{w.active, w.stale, now} {
				hbs = append(hbs, b, b-1, b+1) // wrapping at the ends is fine: more cases
			}
			for _, hb := range hbs {
				for _, d := range declared {
					_, want := classifyAt(now, hb, judge(d, ttl))
					got := w.plain(hb)
					if d != 0 {
						got = w.own(hb, d)
					}
					require.Equal(t, want, got, "now=%d ttl=%d hb=%d declared=%d", now, ttl, hb, d)
					require.Equal(t, want, w.state(hb, d), "state: now=%d ttl=%d hb=%d declared=%d", now, ttl, hb, d)
				}
			}
		}
	}
}

func TestSince(t *testing.T) {
	assert.Equal(t, int64(10), since(10, 0), "a zero span ends at now")
	assert.Equal(t, int64(7), since(10, 3))
	assert.Equal(t, int64(math.MinInt64), since(math.MinInt64+2, 2), "exactly the bottom of the range")
	assert.Equal(t, int64(math.MinInt64), since(math.MinInt64+2, 3), "below the range saturates")
	assert.Equal(t, int64(math.MinInt64), since(10, math.MaxInt64), "every age is within the largest span")
	assert.Equal(t, int64(math.MinInt64+12), since(10, math.MaxInt64-1))
}

func TestLatest(t *testing.T) {
	r := New(WithMaxClockStep(5))
	assert.Equal(t, int64(15), r.latest(10))
	assert.Equal(t, int64(math.MaxInt64), r.latest(math.MaxInt64-5), "exactly the top of the range")
	assert.Equal(t, int64(math.MaxInt64), r.latest(math.MaxInt64-4), "above the range saturates")
	assert.Equal(t, int64(math.MinInt64+5), r.latest(math.MinInt64))
	r = New(WithMaxClockStep(math.MaxInt64))
	assert.Equal(t, int64(math.MaxInt64), r.latest(0))
	assert.Equal(t, int64(math.MaxInt64), r.latest(1))
	assert.Equal(t, int64(-1), r.latest(math.MinInt64))
}

// A prune pass keeps a heartbeat exactly the clock step ahead of its now and
// removes one a nanosecond further; it keeps a consumer exactly 2·ttl old
// and removes one a nanosecond older, and marks Stale (an event) one a
// nanosecond past ttl but not one exactly ttl old.
func TestPruneBoundaries(t *testing.T) {
	const step = time.Second
	const ttl = 10 * time.Second
	now := time.Unix(1e9, 0)
	r := New(WithMaxClockStep(step))
	sub := r.Subscribe(16)
	defer sub.Close()
	at := func(c string, d time.Duration) Key {
		k := Key{Queue: "q", Group: "g", Consumer: c}
		require.NoError(t, r.Heartbeat(k, 0, now.Add(d)))
		return k
	}
	ahead := at("ahead-by-step", step)
	tooFar := at("ahead-by-more", step+1)
	active := at("age-ttl", -ttl)
	stale := at("age-ttl+1", -ttl-1)
	edge := at("age-2ttl", -2*ttl)
	gone := at("age-2ttl+1", -2*ttl-1)
	for len(sub.C) > 0 {
		<-sub.C // the Joined events
	}
	assert.Equal(t, 2, r.PruneExpired(now, ttl))
	_, ok := r.Lookup(tooFar, now, ttl)
	assert.False(t, ok)
	_, ok = r.Lookup(gone, now, ttl)
	assert.False(t, ok)
	for _, k := range []Key{ahead, active, stale, edge} {
		_, ok := r.Lookup(k, now, ttl)
		assert.True(t, ok, "%v kept", k)
	}
	var staled []string
	for len(sub.C) > 0 {
		if ev := <-sub.C; ev.Kind == EventStale {
			staled = append(staled, ev.Key.Consumer)
		}
	}
	assert.ElementsMatch(t, []string{"age-ttl+1", "age-2ttl"}, staled)
	assert.Equal(t, Counts{Active: 2, Stale: 2}, r.Stats(now, ttl))
}

// A consumer that a pass marked Stale goes the slow way through the next
// pass, which must judge "ahead of the clock" at the same boundary: a beat
// exactly the clock step ahead revives it, one a nanosecond further is
// removed.
func TestPruneBoundariesOfMarkedConsumers(t *testing.T) {
	const step = time.Second
	const ttl = 10 * time.Second
	now := time.Unix(1e9, 0)
	r := New(WithMaxClockStep(step))
	revived, removed := Key{Queue: "q", Group: "g", Consumer: "revived"}, Key{Queue: "q", Group: "g", Consumer: "removed"}
	for _, k := range []Key{revived, removed} {
		require.NoError(t, r.Heartbeat(k, 0, now.Add(-ttl-1)))
	}
	require.Equal(t, 0, r.PruneExpired(now, ttl))
	require.Equal(t, Counts{Stale: 2}, r.Stats(now, ttl))
	require.NoError(t, r.Heartbeat(revived, 0, now.Add(step)))
	require.NoError(t, r.Heartbeat(removed, 0, now.Add(step+1)))
	assert.Equal(t, 1, r.PruneExpired(now, ttl))
	_, ok := r.Lookup(revived, now, ttl)
	assert.True(t, ok)
	_, ok = r.Lookup(removed, now, ttl)
	assert.False(t, ok)
}

func TestRoundShards(t *testing.T) {
	for n, want := range map[int]int{
		math.MinInt: 1, -1: 1, 0: 1, 1: 1, 2: 2, 3: 4, 4: 4, 5: 8,
		maxShards - 1: maxShards, maxShards: maxShards, maxShards + 1: maxShards, math.MaxInt: maxShards,
	} {
		assert.Equal(t, want, roundShards(n), "roundShards(%d)", n)
	}
}
