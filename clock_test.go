package presence_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// A beat stamped a day ahead, by a clock that stepped, must not freeze its
// consumer: the next correctly stamped beat is older by far more than the
// clock step, and replaces it.
func TestClockStepIsCorrected(t *testing.T) {
	r := presence.New(presence.WithMaxClockStep(10 * time.Second))
	k := key("q", "g", "c")
	beat(t, r, k, 1, t0)
	ahead := t0.Add(24 * time.Hour)
	beat(t, r, k, 9, ahead)
	beat(t, r, k, 2, t0.Add(time.Second))
	c, ok := lookup(t, r, k, t0.Add(time.Second))
	require.True(t, ok)
	assert.Equal(t, t0.Add(time.Second), c.LastHeartbeat, "the correct beat replaced the future one")
	assert.EqualValues(t, 2, c.Leases)
	assert.Equal(t, t0.Add(time.Second), c.LastActive)
	assert.EqualValues(t, 1, r.Counters().ClockSteps)

	// Older by no more than the step: ordinary reordering, ignored.
	beat(t, r, k, 3, t0.Add(time.Second-10*time.Second))
	c, _ = lookup(t, r, k, t0)
	assert.Equal(t, t0.Add(time.Second), c.LastHeartbeat)
	assert.EqualValues(t, 2, c.Leases)
	assert.EqualValues(t, 1, r.Counters().ClockSteps)

	// A consumer first seen with a future time: the correction also pulls
	// RegisteredAt and LastActive back, so its row stays in order and its
	// checkpoint loads.
	k2 := key("q", "g", "late")
	h := r.Handle(k2)
	require.NoError(t, h.Heartbeat(5, ahead))
	require.NoError(t, h.Heartbeat(0, t0))
	c, _ = lookup(t, r, k2, t0)
	assert.Equal(t, t0, c.RegisteredAt)
	assert.Equal(t, t0, c.LastHeartbeat)
	assert.Equal(t, t0, c.LastActive, "LastActive is no later than the corrected time")
	assert.EqualValues(t, 2, r.Counters().ClockSteps)
	var buf bytes.Buffer
	_, err := r.WriteTo(&buf)
	require.NoError(t, err)
	_, err = presence.New().ReadFrom(&buf)
	require.NoError(t, err)
}

// A consumer whose last correct beat was at t is pruned by the first prune
// after t + 2·TTL, even if its very last beat was stamped in the future, as
// far as 2262.
func TestFutureBeatDoesNotPinItsConsumer(t *testing.T) {
	const ttl = 10 * time.Second
	for _, future := range []time.Time{t0.Add(24 * time.Hour), time.Unix(0, 1<<63-1)} {
		r := presence.New()
		k := key("q", "g", "c")
		beat(t, r, k, 1, t0)
		beat(t, r, k, 1, future)
		assert.Equal(t, 1, r.PruneExpired(t0.Add(2*ttl+time.Nanosecond), ttl), "the future beat pinned the consumer")
		assert.Zero(t, r.Len())
		assert.EqualValues(t, 1, r.Counters().ClockSteps)
	}
}

// The zero time.Time is a caller's bug: every heartbeat and import refuses
// it with ErrZeroTime and changes nothing.
func TestZeroTimeIsRefused(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	beat(t, r, k, 1, t0)
	before := r.Snapshot(t0, ttl)
	assert.ErrorIs(t, r.Heartbeat(k, 2, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Heartbeat(key("q", "g", "new"), 2, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Handle(k).Heartbeat(2, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Handle(key("q", "g", "h")).Heartbeat(2, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.HeartbeatWithTTL(k, 2, time.Second, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.HeartbeatWithTTL(key("q", "g", "new"), 2, time.Second, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Handle(k).HeartbeatWithTTL(2, time.Second, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Handle(key("q", "g", "h")).HeartbeatWithTTL(2, time.Second, time.Time{}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: t0}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.Merge(presence.Consumer{Key: k, LastHeartbeat: t0}), presence.ErrZeroTime)
	assert.ErrorIs(t, r.MergeAt(presence.Consumer{Key: k, RegisteredAt: t0, LastHeartbeat: t0}, time.Time{}), presence.ErrZeroTime)
	var buf bytes.Buffer
	_, err := r.WriteTo(&buf)
	require.NoError(t, err)
	_, err = r.ReadFromAt(&buf, time.Time{})
	assert.ErrorIs(t, err, presence.ErrZeroTime)
	assert.Equal(t, before, r.Snapshot(t0, ttl))
	assert.True(t, errors.Is(presence.ErrZeroTime, presence.ErrZeroTime))
}

// A checkpoint or a merged row whose heartbeat the reader's clock proves
// wrong is not imported; the rest is.
func TestImportsRefuseFutureTimes(t *testing.T) {
	src := presence.New()
	beat(t, src, key("q", "g", "ok"), 1, t0)
	beat(t, src, key("q", "g", "ahead"), 1, t0.Add(time.Hour))
	var buf bytes.Buffer
	_, err := src.WriteTo(&buf)
	require.NoError(t, err)

	r := presence.New()
	_, err = r.ReadFromAt(bytes.NewReader(buf.Bytes()), t0.Add(time.Second))
	require.ErrorIs(t, err, presence.ErrFutureTime)
	assert.Equal(t, []string{"ok"}, consumers(r.Snapshot(t0, ttl)))
	assert.EqualValues(t, 1, r.Counters().ClockSteps)

	// Within the clock step it is restored.
	r = presence.New()
	_, err = r.ReadFromAt(bytes.NewReader(buf.Bytes()), t0.Add(time.Hour-time.Second))
	require.NoError(t, err)
	assert.Equal(t, 2, r.Len())

	// Checkpointer.Load checks against its clock.
	path := filepath.Join(t.TempDir(), "ckpt")
	require.NoError(t, (&presence.Checkpointer{Registry: src, Path: path}).Save())
	r = presence.New()
	err = (&presence.Checkpointer{Registry: r, Path: path, Now: func() time.Time { return t0 }}).Load()
	require.ErrorIs(t, err, presence.ErrFutureTime)
	assert.Equal(t, 1, r.Len())

	// MergeAt likewise; Merge, with no clock, cannot tell.
	row := presence.Consumer{Key: key("q", "g", "m"), RegisteredAt: t0, LastHeartbeat: t0.Add(time.Hour)}
	require.ErrorIs(t, r.MergeAt(row, t0), presence.ErrFutureTime)
	_, ok := lookup(t, r, row.Key, t0)
	assert.False(t, ok)
	require.NoError(t, r.MergeAt(row, t0.Add(time.Hour)))
	require.NoError(t, r.Merge(row))
}
