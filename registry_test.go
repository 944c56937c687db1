package presence_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

const ttl = 30 * time.Second

// yearOne is the earliest time.Time that is not the zero Time, which
// heartbeats refuse.
var yearOne = time.Time{}.Add(time.Nanosecond)

// t0 is an arbitrary wall-clock instant; the tests move time by hand.
var t0 = time.Unix(1_000, 0).UTC()

func key(q, g, c string) presence.Key { return presence.Key{Queue: q, Group: g, Consumer: c} }

func beat(t *testing.T, r *presence.Registry, k presence.Key, leases uint32, now time.Time) {
	t.Helper()
	require.NoError(t, r.Heartbeat(k, leases, now))
}

func consumers(rows []presence.Consumer) []string {
	out := make([]string, len(rows))
	for i, c := range rows {
		out[i] = c.Consumer
	}
	return out
}

// lookup returns k's snapshot row.
func lookup(t *testing.T, r *presence.Registry, k presence.Key, now time.Time) (presence.Consumer, bool) {
	t.Helper()
	for _, c := range r.Snapshot(now, ttl) {
		if c.Key == k {
			return c, true
		}
	}
	return presence.Consumer{}, false
}

// --- The reference contract: first beat, refresh, stale, prune, snapshot order. ---

func TestFirstHeartbeatRegistersActive(t *testing.T) {
	r := presence.New()
	beat(t, r, key("orders", "workers", "w1"), 0, t0)

	snap := r.Snapshot(t0, ttl)
	require.Len(t, snap, 1)
	c := snap[0]
	assert.Equal(t, key("orders", "workers", "w1"), c.Key)
	assert.True(t, c.RegisteredAt.Equal(t0))
	assert.True(t, c.LastHeartbeat.Equal(t0))
	assert.Zero(t, c.Age)
	assert.Zero(t, c.Leases)
	assert.Equal(t, presence.Active, c.State)
}

func TestHeartbeatRefreshesButKeepsRegisteredAt(t *testing.T) {
	r := presence.New()
	k := key("orders", "workers", "w1")
	t1 := t0.Add(5 * time.Second)
	beat(t, r, k, 0, t0)
	beat(t, r, k, 3, t1)

	snap := r.Snapshot(t1, ttl)
	require.Len(t, snap, 1, "a refresh updates in place")
	c := snap[0]
	assert.True(t, c.RegisteredAt.Equal(t0), "RegisteredAt is sticky")
	assert.True(t, c.LastHeartbeat.Equal(t1))
	assert.Zero(t, c.Age)
	assert.EqualValues(t, 3, c.Leases)
	assert.Equal(t, presence.Active, c.State)
}

func TestStateTransitions(t *testing.T) {
	r := presence.New()
	beat(t, r, key("orders", "workers", "w1"), 0, t0)

	assert.Equal(t, presence.Active, r.Snapshot(t0.Add(ttl-time.Millisecond), ttl)[0].State)
	c := r.Snapshot(t0.Add(ttl+time.Millisecond), ttl)[0]
	assert.Equal(t, presence.Stale, c.State)
	assert.Equal(t, ttl+time.Millisecond, c.Age)
	assert.Equal(t, presence.Expired, r.Snapshot(t0.Add(2*ttl+time.Millisecond), ttl)[0].State)
}

func TestPruneRemovesOnlyBeyondHorizon(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "g", "alive"), 0, t0)
	beat(t, r, key("q", "g", "stale"), 0, t0.Add(-ttl*3/2))
	beat(t, r, key("q", "g", "expired"), 0, t0.Add(-3*ttl))

	require.Equal(t, 3, r.Len())
	assert.Equal(t, 1, r.PruneExpired(t0, ttl), "only the entry beyond 2·ttl goes")
	assert.Equal(t, []string{"alive", "stale"}, consumers(r.Snapshot(t0, ttl)))
	assert.Equal(t, 2, r.Len())
}

func TestCountActiveByGroupSeparatesQueuesAndGroups(t *testing.T) {
	r := presence.New()
	beat(t, r, key("orders", "workers", "w1"), 0, t0)
	beat(t, r, key("orders", "workers", "w2"), 0, t0)
	beat(t, r, key("orders", "audit", "a1"), 0, t0)
	beat(t, r, key("billing", "workers", "b1"), 0, t0)
	beat(t, r, key("orders", "workers", "ghost"), 0, t0.Add(-ttl-time.Millisecond)) // stale

	assert.Equal(t, map[presence.GroupKey]int{
		{Queue: "orders", Group: "workers"}:  2,
		{Queue: "orders", Group: "audit"}:    1,
		{Queue: "billing", Group: "workers"}: 1,
	}, r.CountActiveByGroup(t0, ttl))
}

// Aliveness comes from heartbeats, never from pending deliveries.
func TestAlivenessIsHeartbeatDriven(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "g", "idle_poller"), 0, t0)
	beat(t, r, key("q", "g", "stuck_with_leases"), 5, t0.Add(-3*ttl))

	byName := map[string]presence.Consumer{}
	for _, c := range r.Snapshot(t0, ttl) {
		byName[c.Consumer] = c
	}
	assert.Equal(t, presence.Active, byName["idle_poller"].State, "zero leases must not demote a beating consumer")
	assert.Zero(t, byName["idle_poller"].Leases)
	assert.Equal(t, presence.Expired, byName["stuck_with_leases"].State, "leases must not promote a silent consumer")
	assert.EqualValues(t, 5, byName["stuck_with_leases"].Leases)
	assert.Equal(t, map[presence.GroupKey]int{{Queue: "q", Group: "g"}: 1}, r.CountActiveByGroup(t0, ttl))
}

func TestDeregister(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "g", "w1"), 0, t0)
	beat(t, r, key("q", "g", "w2"), 0, t0)
	assert.True(t, r.Deregister(key("q", "g", "w1")))
	assert.False(t, r.Deregister(key("q", "g", "w1")), "a second Deregister finds nothing")
	assert.Equal(t, []string{"w2"}, consumers(r.Snapshot(t0, ttl)))
	assert.Equal(t, 1, r.Len())

	// A heartbeat after Deregister registers anew, with a new RegisteredAt.
	t1 := t0.Add(time.Second)
	beat(t, r, key("q", "g", "w1"), 0, t1)
	c, ok := lookup(t, r, key("q", "g", "w1"), t1)
	require.True(t, ok)
	assert.True(t, c.RegisteredAt.Equal(t1))
}

func TestSnapshotIsOrdered(t *testing.T) {
	r := presence.New()
	for _, k := range []presence.Key{
		key("zeta", "g", "c"), key("alpha", "z", "a"), key("alpha", "a", "z"), key("alpha", "a", "a"),
		// Byte-wise, not by rune or locale: "\xff" sorts after "é" (0xc3 0xa9), which sorts after "z".
		key("\xff", "", ""), key("é", "", ""), key("", "", ""),
	} {
		beat(t, r, k, 0, t0)
	}
	var got []presence.Key
	for _, c := range r.Snapshot(t0, ttl) {
		got = append(got, c.Key)
	}
	assert.Equal(t, []presence.Key{
		key("", "", ""),
		key("alpha", "a", "a"), key("alpha", "a", "z"), key("alpha", "z", "a"),
		key("zeta", "g", "c"), key("é", "", ""), key("\xff", "", ""),
	}, got)
}

// --- Semantics beyond the seed. ---

func TestOlderHeartbeatIsIgnored(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	t1 := t0.Add(time.Second)
	beat(t, r, k, 1, t1)
	require.NoError(t, r.Heartbeat(k, 9, t0), "stale news is not an error")

	c, _ := lookup(t, r, k, t1)
	assert.True(t, c.LastHeartbeat.Equal(t1), "time never moves backwards")
	assert.EqualValues(t, 1, c.Leases, "a stale beat does not touch leases")
	assert.True(t, c.RegisteredAt.Equal(t1))
}

func TestSameTimeHeartbeatUpdatesLeases(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 1, t0)
	beat(t, r, k, 7, t0)
	c, _ := lookup(t, r, k, t0)
	assert.EqualValues(t, 7, c.Leases)
}

func TestAgeClampsAtBothEnds(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 0, t0)

	c, _ := lookup(t, r, k, t0.Add(-time.Hour))
	assert.Zero(t, c.Age, "a clock behind the heartbeat gives age 0")
	assert.Equal(t, presence.Active, c.State)

	// The widest span there is: a heartbeat at the earliest representable
	// instant, read at the latest.
	r2 := presence.New()
	beat(t, r2, k, 0, yearOne) // clamps to 1677
	far := time.Unix(math.MaxInt64, 0)
	c, _ = lookup(t, r2, k, far)
	assert.Equal(t, time.Duration(math.MaxInt64), c.Age)
	assert.Equal(t, presence.Expired, c.State)
	// And the same with an infinite TTL: still active, nothing wraps.
	assert.Equal(t, presence.Active, r2.Snapshot(far, math.MaxInt64)[0].State)
}

func TestExtremeTimesAreClampedNotWrapped(t *testing.T) {
	r := presence.New()
	early, late := key("q", "g", "early"), key("q", "g", "late")
	beat(t, r, early, 0, yearOne)
	beat(t, r, late, 0, time.Unix(math.MaxInt64, 999_999_999))
	rows := r.Snapshot(time.Unix(0, 0), ttl)
	require.Len(t, rows, 2)
	assert.Equal(t, time.Unix(0, math.MinInt64+1).UTC(), rows[0].LastHeartbeat, "earliest instant clamps to 1677")
	assert.Equal(t, time.Unix(0, math.MaxInt64).UTC(), rows[1].LastHeartbeat, "latest instant clamps to 2262")
	assert.True(t, rows[0].LastHeartbeat.Before(rows[1].LastHeartbeat), "order survives clamping")

	// The late consumer is in the future of now: age 0, active. The early one is
	// ancient: expired, and prunable. So is the late one, whose heartbeat
	// is further ahead of the pruner's clock than any clock step.
	assert.Equal(t, presence.Expired, rows[0].State)
	assert.Equal(t, presence.Active, rows[1].State)
	assert.Equal(t, 2, r.PruneExpired(time.Unix(0, 0), ttl))
}

func TestPruneBoundaryIsExactlyTwoTTL(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "g", "edge"), 0, t0.Add(-2*ttl))
	beat(t, r, key("q", "g", "over"), 0, t0.Add(-2*ttl-time.Nanosecond))
	assert.Equal(t, 1, r.PruneExpired(t0, ttl))
	assert.Equal(t, []string{"edge"}, consumers(r.Snapshot(t0, ttl)))

	// A negative TTL counts as zero: anything older than now is expired.
	r2 := presence.New()
	beat(t, r2, key("q", "g", "now"), 0, t0)
	beat(t, r2, key("q", "g", "past"), 0, t0.Add(-time.Nanosecond))
	assert.Equal(t, 1, r2.PruneExpired(t0, -time.Hour))
	assert.Equal(t, []string{"now"}, consumers(r2.Snapshot(t0, -time.Hour)))
}

func TestCountActiveByGroupOmitsGroupsWithoutActive(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "dead", "c"), 0, t0.Add(-3*ttl))
	beat(t, r, key("q", "stale", "c"), 0, t0.Add(-ttl-1))
	assert.Empty(t, r.CountActiveByGroup(t0, ttl))
}

func TestKeysAreKeptApart(t *testing.T) {
	r := presence.New()
	ks := []presence.Key{
		key("a\x00b", "c", ""), key("a", "b\x00c", ""), key("a", "b", "\x00c"),
		key("ab", "", ""), key("", "ab", ""), key("", "", "ab"), key("", "", ""),
		key("a|b", ":", "c"), key("a", "|b:", "c"), key("\xff\xfe", "日本", "\x00"),
	}
	for i, k := range ks {
		beat(t, r, k, uint32(i), t0)
	}
	require.Equal(t, len(ks), r.Len())
	rows := r.Snapshot(t0, ttl)
	require.Len(t, rows, len(ks))
	for i, k := range ks {
		c, ok := lookup(t, r, k, t0)
		require.True(t, ok, "%q", k)
		assert.EqualValues(t, i, c.Leases, "%q kept its own leases", k)
	}
}

func TestHugeKey(t *testing.T) {
	r := presence.New()
	big := strings.Repeat("x", 4<<20)
	k := key(big, big[:1<<20], big[:3])
	beat(t, r, k, 1, t0)
	beat(t, r, k, 2, t0)
	assert.Equal(t, 1, r.Len())
	c, ok := lookup(t, r, k, t0)
	require.True(t, ok)
	assert.EqualValues(t, 2, c.Leases)
	assert.True(t, r.Deregister(k))
}

// mutableKey returns a key whose strings alias buf, as a broker's would when
// it parses names out of a reused network buffer.
func mutableKey(buf []byte, q, g int) presence.Key {
	s := unsafe.String(&buf[0], len(buf))
	return key(s[:q], s[q:q+g], s[q+g:])
}

func TestRegistryCopiesKeys(t *testing.T) {
	r := presence.New()
	buf := []byte("ordersworkersw1")
	k := mutableKey(buf, 6, 7)
	beat(t, r, k, 0, t0)
	h := r.Handle(mutableKey(buf, 6, 7))

	copy(buf, "XXXXXXXXXXXXXXX") // the broker reuses its buffer
	rows := r.Snapshot(t0, ttl)
	require.Len(t, rows, 1)
	assert.Equal(t, key("orders", "workers", "w1"), rows[0].Key)
	assert.Equal(t, key("orders", "workers", "w1"), h.Key())
	require.NoError(t, h.Heartbeat(0, t0))
	assert.Equal(t, 1, r.Len(), "the handle still names the original consumer")
}

func TestMaxConsumers(t *testing.T) {
	r := presence.New(presence.WithMaxConsumers(2))
	beat(t, r, key("q", "g", "a"), 0, t0)
	beat(t, r, key("q", "g", "b"), 0, t0)

	err := r.Heartbeat(key("q", "g", "c"), 0, t0)
	assert.True(t, errors.Is(err, presence.ErrTooManyConsumers), "got %v", err)
	assert.Equal(t, 2, r.Len(), "a rejected registration changes nothing")
	assert.Equal(t, []string{"a", "b"}, consumers(r.Snapshot(t0, ttl)))

	h := r.Handle(key("q", "g", "c"))
	assert.ErrorIs(t, h.Heartbeat(0, t0), presence.ErrTooManyConsumers)
	beat(t, r, key("q", "g", "a"), 4, t0.Add(time.Second)) // refreshes always succeed

	// Freed slots can be taken again, through removal of either kind.
	assert.True(t, r.Deregister(key("q", "g", "a")))
	require.NoError(t, h.Heartbeat(0, t0.Add(time.Second)))
	assert.Equal(t, 2, r.Len())
	later := t0.Add(2*ttl + 1) // b (beat at t0) is expired, c (t0+1s) is not
	assert.Equal(t, 1, r.PruneExpired(later, ttl))
	beat(t, r, key("q", "g", "d"), 0, later)
	assert.Equal(t, []string{"c", "d"}, consumers(r.Snapshot(later, ttl)))

	// n <= 0 means no limit.
	r = presence.New(presence.WithMaxConsumers(-1))
	for i := 0; i < 100; i++ {
		beat(t, r, key("q", "g", string(rune('a'+i))), 0, t0)
	}
	assert.Equal(t, 100, r.Len())
}

func TestOptionsNeverPanic(t *testing.T) {
	for _, n := range []int{math.MinInt, -1, 0, 1, 3, 1 << 20, math.MaxInt} {
		if n > 1<<16 && testing.Short() {
			continue // clamped to 2^16 (TestRoundShards), which take a second to make
		}
		r := presence.New(presence.WithShards(n), presence.WithPresize(n), nil)
		beat(t, r, key("q", "g", "c"), 0, t0)
		assert.Equal(t, 1, r.Len(), "shards=%d", n)
	}
}

func TestNilHandle(t *testing.T) {
	var h *presence.Handle
	assert.ErrorIs(t, h.Heartbeat(0, t0), presence.ErrNilHandle)
	assert.Equal(t, presence.Key{}, h.Key())
	assert.ErrorIs(t, new(presence.Handle).Heartbeat(0, t0), presence.ErrNilHandle)
}

func TestHandle(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	h := r.Handle(k)
	assert.Equal(t, k, h.Key())
	assert.Zero(t, r.Len(), "Handle registers nothing")

	require.NoError(t, h.Heartbeat(2, t0))
	c, ok := lookup(t, r, k, t0)
	require.True(t, ok)
	assert.EqualValues(t, 2, c.Leases)

	// Mixed with heartbeats by key, one entry.
	beat(t, r, k, 3, t0.Add(time.Second))
	require.NoError(t, h.Heartbeat(4, t0.Add(2*time.Second)))
	require.NoError(t, h.Heartbeat(9, t0), "older beat through the handle is ignored")
	c, _ = lookup(t, r, k, t0)
	assert.EqualValues(t, 4, c.Leases)
	assert.True(t, c.LastHeartbeat.Equal(t0.Add(2*time.Second)))
	assert.True(t, c.RegisteredAt.Equal(t0))

	// After Deregister and after a prune, the handle registers again.
	assert.True(t, r.Deregister(k))
	require.NoError(t, h.Heartbeat(5, t0.Add(3*time.Second)))
	c, ok = lookup(t, r, k, t0)
	require.True(t, ok)
	assert.True(t, c.RegisteredAt.Equal(t0.Add(3*time.Second)))

	assert.Equal(t, 1, r.PruneExpired(t0.Add(time.Hour), ttl))
	require.NoError(t, h.Heartbeat(6, t0.Add(time.Hour)))
	c, ok = lookup(t, r, k, t0.Add(time.Hour))
	require.True(t, ok)
	assert.EqualValues(t, 6, c.Leases)
	assert.Equal(t, 1, r.Len())

	// A handle made before a key-registration finds that entry.
	r2 := presence.New()
	h2 := r2.Handle(k)
	beat(t, r2, k, 1, t0)
	require.NoError(t, h2.Heartbeat(2, t0.Add(time.Second)))
	assert.Equal(t, 1, r2.Len())
	c, _ = lookup(t, r2, k, t0)
	assert.True(t, c.RegisteredAt.Equal(t0))
}

func TestLenCountsAllStates(t *testing.T) {
	r := presence.New(presence.WithShards(4))
	for i := 0; i < 1000; i++ {
		beat(t, r, key("q", "g", strings.Repeat("c", i)), 0, t0.Add(-time.Duration(i)*time.Second))
	}
	assert.Equal(t, 1000, r.Len())
	assert.Len(t, r.Snapshot(t0, ttl), 1000)
	n := r.PruneExpired(t0, ttl)
	assert.Equal(t, 1000-61, n) // ages 0..60 s are within 2·ttl
	assert.Equal(t, 61, r.Len())
}
