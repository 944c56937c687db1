package presence_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed351623e9/presence"
)

func TestLastActiveSeparatesSeenFromWorking(t *testing.T) {
	r := presence.New()
	poller, worker := key("q", "g", "poller"), key("q", "g", "worker")
	beat(t, r, poller, 0, t0)
	beat(t, r, worker, 2, t0)
	beat(t, r, poller, 0, t0.Add(time.Second))
	beat(t, r, worker, 0, t0.Add(2*time.Second)) // still alive, no work now

	p, _ := r.Lookup(poller, t0, ttl)
	w, _ := r.Lookup(worker, t0, ttl)
	assert.True(t, p.LastActive.IsZero(), "a poller that never got work has no LastActive")
	assert.True(t, p.LastHeartbeat.Equal(t0.Add(time.Second)))
	assert.True(t, w.LastActive.Equal(t0), "LastActive is the last beat with leases")
	assert.True(t, w.LastHeartbeat.Equal(t0.Add(2*time.Second)))

	beat(t, r, worker, 5, t0.Add(time.Second)) // older than LastHeartbeat: ignored
	w, _ = r.Lookup(worker, t0, ttl)
	assert.True(t, w.LastActive.Equal(t0), "a stale beat does not move LastActive")
	beat(t, r, worker, 1, t0.Add(3*time.Second))
	w, _ = r.Lookup(worker, t0, ttl)
	assert.True(t, w.LastActive.Equal(t0.Add(3*time.Second)))
}

func populate(t *testing.T, r *presence.Registry) {
	t.Helper()
	for _, q := range []string{"orders", "billing"} {
		for _, g := range []string{"workers", "audit"} {
			for i := 0; i < 3; i++ {
				// w0 active, w1 stale, w2 expired
				beat(t, r, key(q, g, fmt.Sprint("w", i)), uint32(i), t0.Add(-time.Duration(i)*ttl*3/2))
			}
		}
	}
}

func TestViewsAgreeWithSnapshot(t *testing.T) {
	r := presence.New()
	populate(t, r)
	all := r.Snapshot(t0, ttl)
	require.Len(t, all, 12)

	filter := func(keep func(presence.Key) bool) []presence.Consumer {
		out := []presence.Consumer{}
		for _, c := range all {
			if keep(c.Key) {
				out = append(out, c)
			}
		}
		return out
	}
	g := presence.GroupKey{Queue: "orders", Group: "audit"}
	assert.Equal(t, filter(func(k presence.Key) bool { return k.Queue == g.Queue && k.Group == g.Group }), r.SnapshotGroup(g, t0, ttl))
	assert.Equal(t, filter(func(k presence.Key) bool { return k.Queue == "billing" }), r.SnapshotQueue("billing", t0, ttl))
	assert.Empty(t, r.SnapshotGroup(presence.GroupKey{Queue: "orders", Group: "nobody"}, t0, ttl))
	assert.Empty(t, r.SnapshotQueue("nothing", t0, ttl))
	assert.NotNil(t, r.SnapshotQueue("nothing", t0, ttl), "an empty view is an empty slice, not nil")

	c, ok := r.Lookup(key("orders", "workers", "w1"), t0, ttl)
	require.True(t, ok)
	assert.Equal(t, all[filterIndex(all, key("orders", "workers", "w1"))], c)
	_, ok = r.Lookup(key("orders", "workers", "w9"), t0, ttl)
	assert.False(t, ok)

	assert.Equal(t, presence.Counts{Active: 4, Stale: 4, Expired: 4}, r.Stats(t0, ttl))
	assert.Equal(t, 12, r.Stats(t0, ttl).Total())
	counts := r.CountByGroup(t0, ttl)
	assert.Len(t, counts, 4)
	assert.Equal(t, presence.Counts{Active: 1, Stale: 1, Expired: 1}, counts[g])

	var streamed []presence.Consumer
	for c := range r.All(t0, ttl) {
		streamed = append(streamed, c)
	}
	assert.ElementsMatch(t, all, streamed)
	n := 0
	for range r.All(t0, ttl) {
		n++
		if n == 5 {
			break
		}
	}
	assert.Equal(t, 5, n, "ranging over All stops when asked")
}

func filterIndex(rows []presence.Consumer, k presence.Key) int {
	for i, c := range rows {
		if c.Key == k {
			return i
		}
	}
	return -1
}

func TestAppendSnapshotReusesTheSlice(t *testing.T) {
	r := presence.New()
	populate(t, r)
	buf := make([]presence.Consumer, 0, 64)
	buf = r.AppendSnapshot(buf, t0, ttl)
	assert.Equal(t, r.Snapshot(t0, ttl), buf)
	allocs := testing.AllocsPerRun(100, func() {
		buf = r.AppendSnapshot(buf[:0], t0, ttl)
	})
	assert.Zero(t, allocs, "a poller with enough capacity allocates nothing")

	head := []presence.Consumer{{Key: key("zzz", "", "")}}
	out := r.AppendSnapshot(head, t0, ttl)
	assert.Equal(t, key("zzz", "", ""), out[0].Key, "rows already in dst stay first")
	assert.Len(t, out, 13)
}

func TestGroupIndexForgetsEmptyGroups(t *testing.T) {
	r := presence.New()
	populate(t, r)
	g, q := r.IndexSizes()
	assert.Equal(t, 4, g)
	assert.Equal(t, 2, q)
	assert.Equal(t, 4, r.PruneExpired(t0, ttl))
	for _, c := range r.Snapshot(t0, ttl) {
		if c.Queue == "orders" {
			require.True(t, r.Deregister(c.Key))
		}
	}
	g, q = r.IndexSizes()
	assert.Equal(t, 2, g, "the orders groups are gone")
	assert.Equal(t, 1, q, "and so is the orders queue")
	assert.Equal(t, 4, r.PruneExpired(t0.Add(time.Hour), ttl))
	g, q = r.IndexSizes()
	assert.Zero(t, g)
	assert.Zero(t, q)
	beat(t, r, key("orders", "workers", "back"), 0, t0)
	assert.Len(t, r.SnapshotGroup(presence.GroupKey{Queue: "orders", Group: "workers"}, t0, ttl), 1)
}

// A group's member list keeps departed members only until they outnumber
// the live ones, and the views never show them; a queue's list of groups
// does the same with dead groups.
func TestGroupIndexDropsDepartedMembers(t *testing.T) {
	r := presence.New()
	g := presence.GroupKey{Queue: "q", Group: "g"}
	const n = 1000
	for i := 0; i < n; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	for i := 0; i < n-10; i++ {
		require.True(t, r.Deregister(key("q", "g", fmt.Sprint(i))))
		live := n - i - 1
		assert.LessOrEqual(t, r.GroupSlots(g), 2*live+1, "after %d left", i+1)
	}
	rows := r.SnapshotGroup(g, t0, ttl)
	require.Len(t, rows, 10)
	assert.Equal(t, fmt.Sprint(n-10), rows[0].Consumer)
	assert.Len(t, r.Snapshot(t0, ttl), 10)

	// A queue of many groups, most of which empty out.
	for i := 0; i < 100; i++ {
		beat(t, r, key("many", fmt.Sprint(i), "c"), 0, t0)
	}
	for i := 0; i < 99; i++ {
		require.True(t, r.Deregister(key("many", fmt.Sprint(i), "c")))
		live := 100 - i - 1
		assert.LessOrEqual(t, r.QueueSlots("many"), 2*live+1, "after %d groups emptied", i+1)
	}
	// Groups that come and go in a queue that keeps one: the list stays
	// short however long the history.
	for i := 0; i < 100; i++ {
		k := key("many", fmt.Sprint("churn-", i), "c")
		beat(t, r, k, 0, t0)
		require.True(t, r.Deregister(k))
		assert.LessOrEqual(t, r.QueueSlots("many"), 3, "after %d groups came and went", i+1)
	}
	assert.Len(t, r.SnapshotQueue("many", t0, ttl), 1)
	groups, queues := r.IndexSizes()
	assert.Equal(t, 2, groups)
	assert.Equal(t, 2, queues)
}

func TestMaxConsumersPerGroup(t *testing.T) {
	r := presence.New(presence.WithMaxConsumersPerGroup(2))
	beat(t, r, key("q", "g", "a"), 0, t0)
	beat(t, r, key("q", "g", "b"), 0, t0)
	err := r.Heartbeat(key("q", "g", "c"), 0, t0)
	assert.ErrorIs(t, err, presence.ErrGroupFull)
	assert.EqualError(t, err, "presence: consumer group full")
	assert.Equal(t, 2, r.Len(), "a refused registration changes nothing")
	beat(t, r, key("q", "other", "c"), 0, t0)              // other groups are not affected
	beat(t, r, key("q2", "g", "c"), 0, t0)                 // nor the same group name in another queue
	beat(t, r, key("q", "g", "a"), 3, t0.Add(time.Second)) // refreshes always succeed
	h := r.Handle(key("q", "g", "c"))
	assert.ErrorIs(t, h.Heartbeat(0, t0), presence.ErrGroupFull)

	require.True(t, r.Deregister(key("q", "g", "b")))
	require.NoError(t, h.Heartbeat(0, t0), "a freed slot can be taken")
	assert.Len(t, r.SnapshotGroup(presence.GroupKey{Queue: "q", Group: "g"}, t0, ttl), 2)

	// Both limits together: the registry-wide one bites first here.
	r2 := presence.New(presence.WithMaxConsumers(1), presence.WithMaxConsumersPerGroup(5))
	beat(t, r2, key("q", "g", "a"), 0, t0)
	assert.ErrorIs(t, r2.Heartbeat(key("q", "g", "b"), 0, t0), presence.ErrTooManyConsumers)
}

func TestMaxConsumersPerGroupUnderConcurrency(t *testing.T) {
	const limit = 5
	r := presence.New(presence.WithMaxConsumersPerGroup(limit))
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < scale(3000); i++ {
				k := key("q", fmt.Sprint("g", i%3), fmt.Sprint(w, "-", i%20))
				if err := r.Heartbeat(k, 0, t0); err != nil && err != presence.ErrGroupFull {
					t.Error(err)
				}
				if i%5 == 0 {
					r.Deregister(k)
				}
			}
		}()
	}
	wg.Wait()
	for g, c := range r.CountByGroup(t0, ttl) {
		assert.LessOrEqual(t, c.Total(), limit, "group %v", g)
	}
	checkRows(t, r, r.Snapshot(t0, ttl))
}

// recv reads the events buffered on s without waiting.
func recv(s *presence.Subscription) []presence.Event {
	var out []presence.Event
	for {
		select {
		case e := <-s.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

func ev(kind presence.EventKind, k presence.Key, at time.Time) presence.Event {
	return presence.Event{Kind: kind, Key: k, At: at}
}

func TestEvents(t *testing.T) {
	r := presence.New()
	sub := r.Subscribe(0)
	defer sub.Close()
	k := key("q", "g", "c")

	beat(t, r, k, 0, t0)
	beat(t, r, k, 0, t0.Add(time.Second)) // a refresh emits nothing
	assert.Equal(t, []presence.Event{ev(presence.EventJoined, k, t0)}, recv(sub))

	at := t0.Add(time.Second + ttl + 1) // stale now
	r.PruneExpired(at, ttl)
	r.PruneExpired(at.Add(time.Second), ttl) // still stale: no repeat
	assert.Equal(t, []presence.Event{ev(presence.EventStale, k, at)}, recv(sub))

	beat(t, r, k, 0, at)
	r.PruneExpired(at, ttl)
	assert.Equal(t, []presence.Event{ev(presence.EventRevived, k, at)}, recv(sub))

	// Stale and back between two passes: nothing.
	beat(t, r, k, 0, at.Add(2*ttl))
	r.PruneExpired(at.Add(2*ttl), ttl)
	assert.Empty(t, recv(sub))

	// Active to expired between two passes: Expired only.
	gone := at.Add(10 * ttl)
	assert.Equal(t, 1, r.PruneExpired(gone, ttl))
	assert.Equal(t, []presence.Event{ev(presence.EventExpired, k, gone)}, recv(sub))

	beat(t, r, k, 0, gone)
	require.True(t, r.Deregister(k))
	assert.Equal(t, []presence.Event{
		ev(presence.EventJoined, k, gone),
		ev(presence.EventLeft, k, time.Time{}),
	}, recv(sub))

	assert.Equal(t, "joined stale revived expired left EventKind(9)", fmt.Sprint(
		presence.EventJoined, presence.EventStale, presence.EventRevived, presence.EventExpired, presence.EventLeft, presence.EventKind(9)))
}

func TestSlowSubscriberNeverBlocks(t *testing.T) {
	r := presence.New()
	slow := r.Subscribe(2)
	fast := r.Subscribe(100)
	for i := 0; i < 10; i++ {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0) // would block on a full channel
	}
	assert.Len(t, recv(slow), 2)
	assert.EqualValues(t, 8, slow.Dropped())
	assert.Len(t, recv(fast), 10)
	assert.Zero(t, fast.Dropped())

	slow.Close()
	slow.Close() // idempotent
	_, open := <-slow.C
	assert.False(t, open, "Close closes C")
	beat(t, r, key("q", "g", "after"), 0, t0)
	assert.Len(t, recv(fast), 1, "the other subscriber still receives")
}

// Under concurrent registrations and a concurrent prune, every consumer
// emits exactly one Joined, and one Expired once it is pruned.
func TestEventsUnderConcurrency(t *testing.T) {
	r := presence.New()
	n := scale(4000)
	sub := r.Subscribe(4 * n)
	defer sub.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				k := key("q", fmt.Sprint("g", i%7), fmt.Sprint(i))
				if err := r.Heartbeat(k, 0, t0); err != nil {
					t.Error(err)
				}
				_ = r.Heartbeat(k, 0, t0.Add(time.Millisecond))
			}
		}()
	}
	wg.Add(1)
	go func() { // prunes with a now at which nothing is expired: no Expired events
		defer wg.Done()
		for i := 0; i < 20; i++ {
			r.PruneExpired(t0, ttl)
		}
	}()
	wg.Wait()
	pruned := r.PruneExpired(t0.Add(time.Hour), ttl)
	assert.Equal(t, n, pruned)

	joined, expired := map[presence.Key]int{}, map[presence.Key]int{}
	for _, e := range recv(sub) {
		switch e.Kind {
		case presence.EventJoined:
			joined[e.Key]++
		case presence.EventExpired:
			expired[e.Key]++
		default:
			t.Errorf("unexpected %v for %q", e.Kind, e.Key)
		}
	}
	assert.Zero(t, sub.Dropped())
	assert.Len(t, joined, n)
	assert.Len(t, expired, n)
	for k, c := range joined {
		assert.Equal(t, 1, c, "Joined for %q", k)
		assert.Equal(t, 1, expired[k], "Expired for %q", k)
	}
}

func TestSweeper(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := presence.New()
	sub := r.Subscribe(0)
	defer sub.Close()
	k := key("q", "g", "c")
	beat(t, r, k, 0, t0)

	var mu sync.Mutex
	clock := t0
	ticks := make(chan time.Time)
	sw := &presence.Sweeper{
		Registry: r, TTL: ttl, Ticks: ticks,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	set := func(d time.Duration) {
		mu.Lock()
		clock = t0.Add(d)
		mu.Unlock()
	}

	// A send returns once Run has taken the tick; the next send, once that
	// sweep is over. So after two sends the first sweep has finished.
	set(ttl + 1)
	ticks <- time.Time{}
	ticks <- time.Time{}
	set(3 * ttl)
	ticks <- time.Time{}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	assert.Equal(t, []presence.Event{
		ev(presence.EventJoined, k, t0),
		ev(presence.EventStale, k, t0.Add(ttl+1)),
		ev(presence.EventExpired, k, t0.Add(3*ttl)),
	}, recv(sub))
	assert.Zero(t, r.Len())
}

func TestSweeperWithRealTicker(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := presence.New()
	beat(t, r, key("q", "g", "c"), 0, t0)
	swept := make(chan int, 1)
	sw := &presence.Sweeper{
		Registry: r, Interval: time.Millisecond, // the default clock: t0 is long expired
		OnSweep: func(_ time.Time, n int) {
			select {
			case swept <- n:
			default:
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	assert.Equal(t, 1, <-swept) // waits for a sweep; no sleep, no timing assertion
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	assert.ErrorIs(t, (&presence.Sweeper{}).Run(context.Background()), presence.ErrNoRegistry)
}
