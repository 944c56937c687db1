package presence_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/entry"
)

// An older beat that has moved the time but not yet written its leases is
// overtaken by a newer beat. The older beat must then leave the newer beat's
// leases alone. The hook makes this interleaving certain.
func TestOvertakenBeatKeepsNewerLeases(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	require.NoError(t, r.Heartbeat(k, 0, t0))

	paused, resume := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	entry.TestHookAfterTimeCAS = func() {
		if first.CompareAndSwap(false, true) { // only the first beat pauses
			close(paused)
			<-resume
		}
	}
	defer func() { entry.TestHookAfterTimeCAS = nil }()

	done := make(chan error)
	go func() { done <- r.Heartbeat(k, 1, t0.Add(time.Second)) }() // older
	<-paused
	require.NoError(t, r.Heartbeat(k, 2, t0.Add(2*time.Second))) // newer, completes
	close(resume)
	require.NoError(t, <-done)

	c, ok := lookup(t, r, k, t0)
	require.True(t, ok)
	assert.Equal(t, t0.Add(2*time.Second), c.LastHeartbeat)
	assert.EqualValues(t, 2, c.Leases, "the overtaken beat overwrote newer leases")
}

// A Deregister pauses before it retires its consumer, while a mirror
// collects and writes the consumer's row. The deregistration must still
// reach the mirror afterwards: it is recorded once the entry is retired,
// not before, when a collection could take the record and then write the
// still-live row after the delete.
func TestHookDeregisterPausedBeforeRetire(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	r.CollectDeleted(func(presence.Key) {}) // start recording
	require.NoError(t, r.Heartbeat(k, 0, t0))

	copyOf := map[presence.Key]bool{}
	round := func() {
		r.CollectDeleted(func(k presence.Key) { delete(copyOf, k) })
		r.CollectChanged(func(c presence.Consumer) { copyOf[c.Key] = true })
	}
	// The pause point is reached on Deregister's goroutine and under no
	// lock, so the round runs right there.
	clear := onceAt(presence.HookDeregisterRecorded, round) // the row is written; the record is left for later
	require.True(t, r.Deregister(k))
	require.True(t, clear(), "Deregister did not reach its pause point")
	round()
	assert.False(t, copyOf[k], "the deregistration was lost")
}
