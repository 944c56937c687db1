package presenceredis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// A 1-second real-time consumer, a 5-minute batch consumer and one that
// declares nothing, mirrored to Redis: the mirror's rows and counts judge
// each by its own TTL, as the registry does; Prune removes each by its own
// budget; a restarted broker restores the declarations.
func TestDeclaredTTLThroughRedis(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	rt, batch, plain := key("orders", "realtime", "rt"), key("orders", "batch", "job"), key("orders", "legacy", "old")
	require.NoError(t, r.HeartbeatWithTTL(rt, 1, time.Second, t0))
	require.NoError(t, r.Handle(batch).HeartbeatWithTTL(1, 5*time.Minute, t0))
	require.NoError(t, r.Heartbeat(plain, 1, t0))
	m := New(r, s.client(t), Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	for _, after := range []time.Duration{0, 1500 * time.Millisecond, 3 * time.Second, 45 * time.Second, 2 * time.Minute, 6 * time.Minute, 11 * time.Minute} {
		now := t0.Add(after)
		got, err := m.Snapshot(ctx, now, presence.DefaultTTL)
		require.NoError(t, err)
		want := r.Snapshot(now, presence.DefaultTTL)
		rowsEqual(t, want, got)
		for i := range want {
			assert.Equal(t, want[i].State, got[i].State, "%v at +%v", want[i].Key, after)
			assert.Equal(t, want[i].TTL, got[i].TTL, "%v at +%v", want[i].Key, after)
		}
		counts, err := m.CountByGroup(ctx, now, presence.DefaultTTL)
		require.NoError(t, err)
		assert.Equal(t, r.CountByGroup(now, presence.DefaultTTL), counts, "at +%v", after)
	}

	// A restarted broker gets the declarations back.
	restarted := presence.New()
	n, err := New(restarted, s.client(t), Options{}).Restore(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	for _, after := range []time.Duration{1500 * time.Millisecond, 2 * time.Minute, 6 * time.Minute} {
		now := t0.Add(after)
		assert.Equal(t, r.Snapshot(now, presence.DefaultTTL), restarted.Snapshot(now, presence.DefaultTTL), "at +%v", after)
	}

	// Prune in Redis: each by its own budget.
	names := func() []string {
		rows, err := m.Snapshot(ctx, t0, presence.DefaultTTL)
		require.NoError(t, err)
		var out []string
		for _, c := range rows {
			out = append(out, c.Consumer)
		}
		return out
	}
	pruned, err := m.Prune(ctx, t0.Add(1900*time.Millisecond), presence.DefaultTTL)
	require.NoError(t, err)
	assert.Zero(t, pruned, "the real-time consumer is within its 2 s")
	pruned, err = m.Prune(ctx, t0.Add(2100*time.Millisecond), presence.DefaultTTL)
	require.NoError(t, err)
	assert.Equal(t, 1, pruned)
	assert.Equal(t, []string{"job", "old"}, names())
	pruned, err = m.Prune(ctx, t0.Add(61*time.Second), presence.DefaultTTL)
	require.NoError(t, err)
	assert.Equal(t, 1, pruned, "the plain one by the read's 30 s")
	pruned, err = m.Prune(ctx, t0.Add(9*time.Minute), presence.DefaultTTL)
	require.NoError(t, err)
	assert.Zero(t, pruned, "the batch one is within its 10 min")
	assert.Equal(t, []string{"job"}, names())
	pruned, err = m.Prune(ctx, t0.Add(10*time.Minute+time.Second), presence.DefaultTTL)
	require.NoError(t, err)
	assert.Equal(t, 1, pruned)
}

// Brokers that declare different TTLs for one consumer: Redis keeps the
// declaration of the newest heartbeat, whatever order the flushes arrive
// in, and a newer heartbeat that declares nothing keeps the declaration.
func TestRedisKeepsNewestDeclaration(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	k := key("orders", "workers", "w1")
	ttlIn := func(m *Mirror) time.Duration {
		rows, err := m.Snapshot(ctx, t0, ttl)
		require.NoError(t, err)
		require.Len(t, rows, 1)
		return rows[0].TTL
	}
	older, newer, silent := presence.New(), presence.New(), presence.New()
	require.NoError(t, older.HeartbeatWithTTL(k, 0, time.Hour, t0))
	require.NoError(t, newer.HeartbeatWithTTL(k, 0, time.Minute, t0.Add(time.Second)))
	require.NoError(t, silent.Heartbeat(k, 0, t0.Add(2*time.Second)))
	mo, mn, ms := New(older, s.client(t), Options{}), New(newer, s.client(t), Options{}), New(silent, s.client(t), Options{})

	_, err := mn.Flush(ctx)
	require.NoError(t, err)
	_, err = mo.Flush(ctx) // the older declaration arrives last: it must not win
	require.NoError(t, err)
	assert.Equal(t, time.Minute, ttlIn(mo))
	_, err = ms.Flush(ctx) // the newest heartbeat declares nothing: the declaration stays
	require.NoError(t, err)
	assert.Equal(t, time.Minute, ttlIn(mo))
	rows, err := mo.Snapshot(ctx, t0.Add(2*time.Second), ttl)
	require.NoError(t, err)
	assert.True(t, rows[0].LastHeartbeat.Equal(t0.Add(2*time.Second)))

	// Merged back into a broker, the row brings its declaration.
	n, err := ms.Restore(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	c, ok := silent.Lookup(k, t0, ttl)
	require.True(t, ok)
	assert.Equal(t, time.Minute, c.TTL)
}

// A record written before TTLs (73 bytes, no TTL field) is read as
// declaring none, and a merge over it writes the new layout.
func TestRedisReadsRecordsWithoutTTL(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	k := key("orders", "workers", "old")
	rec := encodeRecord(presence.Consumer{RegisteredAt: t0, LastHeartbeat: t0, Leases: 3})
	v1 := rec[:recordLenV1]
	field, b := fieldOf(k)
	r := presence.New()
	m := New(r, s.client(t), Options{})
	require.NoError(t, s.client(t).HSet(ctx, m.bucketKey(b), field, v1).Err())

	rows, err := m.Snapshot(ctx, t0.Add(45*time.Second), ttl)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Zero(t, rows[0].TTL)
	assert.Equal(t, presence.Stale, rows[0].State)
	assert.EqualValues(t, 3, rows[0].Leases)

	require.NoError(t, r.HeartbeatWithTTL(k, 1, time.Minute, t0.Add(time.Second)))
	_, err = m.Flush(ctx)
	require.NoError(t, err)
	v, err := s.client(t).HGet(ctx, m.bucketKey(b), field).Result()
	require.NoError(t, err)
	assert.Len(t, v, recordLen)
	rows, err = m.Snapshot(ctx, t0.Add(45*time.Second), ttl)
	require.NoError(t, err)
	assert.Equal(t, time.Minute, rows[0].TTL)
	assert.Equal(t, presence.Active, rows[0].State)
	assert.True(t, rows[0].RegisteredAt.Equal(t0), "the older registration stays")
}
