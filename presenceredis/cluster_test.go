package presenceredis

import (
	"context"
	"fmt"
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
