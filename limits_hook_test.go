package presence_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/entry"
)

// A heartbeat that finds its consumer retired by a prune that has not yet
// given back the consumer's slots must register it again: the retired entry
// must not count against the limits that admit its successor. The hook holds
// the prune between its retire CAS and the rest of the removal.
func TestRetiredEntryDoesNotBlockItsSuccessor(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  presence.Option
	}{
		{"per group", presence.WithMaxConsumersPerGroup(1)},
		{"registry-wide", presence.WithMaxConsumers(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := presence.New(tc.opt)
			k := key("q", "g", "c")
			require.NoError(t, r.Heartbeat(k, 0, t0))

			paused, resume := make(chan struct{}), make(chan struct{})
			entry.TestHookAfterRetire = func() {
				close(paused)
				<-resume
			}
			defer func() { entry.TestHookAfterRetire = nil }()
			pruned := make(chan int)
			later := t0.Add(time.Hour)
			go func() { pruned <- r.PruneExpired(later, time.Second) }()
			<-paused
			entry.TestHookAfterRetire = nil

			// The heartbeat finds its consumer retired. It may wait for the
			// removal to finish, but must not be refused.
			beaten := make(chan error, 1)
			go func() { beaten <- r.Heartbeat(k, 1, later) }()
			select {
			case err := <-beaten:
				require.NoError(t, err, "the retired entry blocked its own successor")
				beaten <- nil
			case <-time.After(50 * time.Millisecond):
			}
			close(resume)
			require.Equal(t, 1, <-pruned)
			require.NoError(t, <-beaten, "the retired entry blocked its own successor")

			c, ok := lookup(t, r, k, later)
			require.True(t, ok, "the heartbeat after the prune was lost")
			require.Equal(t, later, c.LastHeartbeat)
			require.Equal(t, 1, r.Len())
			require.Equal(t, map[presence.GroupKey]int{{Queue: "q", Group: "g"}: 1}, r.CountActiveByGroup(later, time.Minute))
			// The limit still holds for everyone else.
			err := r.Heartbeat(key("q", "g", "other"), 0, later)
			require.True(t, errors.Is(err, presence.ErrGroupFull) || errors.Is(err, presence.ErrTooManyConsumers), "got %v", err)
		})
	}
}
