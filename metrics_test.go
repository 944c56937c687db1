package presence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

func TestCounters(t *testing.T) {
	r := presence.New(presence.WithCounters(), presence.WithMaxConsumers(2))
	sub := r.Subscribe(1)
	defer sub.Close()
	a, b := key("q", "g", "a"), key("q", "g", "b")
	beat(t, r, a, 0, t0)                                                // registration + heartbeat
	beat(t, r, a, 0, t0.Add(time.Second))                               // heartbeat
	require.NoError(t, r.Handle(a).Heartbeat(1, t0.Add(2*time.Second))) // heartbeat by handle
	beat(t, r, b, 0, t0.Add(-time.Hour))                                // registration + heartbeat
	assert.ErrorIs(t, r.Heartbeat(key("q", "g", "c"), 0, t0), presence.ErrTooManyConsumers)
	assert.Equal(t, 1, r.PruneExpired(t0, ttl))
	assert.True(t, r.Deregister(a))

	got := r.Counters()
	assert.Equal(t, presence.Counters{
		Heartbeats: 4, Registrations: 2, Expired: 1, Left: 1, Rejected: 1,
		EventsDropped: 3, // 4 events (joined a, joined b, expired b, left a) into a buffer of 1
	}, got)

	plain := presence.New()
	beat(t, plain, a, 0, t0)
	assert.Zero(t, plain.Counters().Heartbeats, "counting is opt-in")
}

func TestCountingRefreshAllocatesNothing(t *testing.T) {
	r := presence.New(presence.WithCounters())
	k := key("q", "g", "c")
	beat(t, r, k, 0, t0)
	h := r.Handle(k)
	now := t0
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(1)
		_ = r.Heartbeat(k, 1, now)
		_ = h.Heartbeat(1, now)
	}))
}
