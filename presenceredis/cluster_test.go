package presenceredis

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
