package presence_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Heartbeats that race prunes of their own consumers are never refused by a
// limit: the registry is exactly full, every consumer beats, and a pruner
// keeps finding them expired. Meanwhile, and at rest, no group holds more
// than its limit.
func TestLimitsUnderRacingPrune(t *testing.T) {
	const groups, per = 4, 2
	dur := time.Second
	if testing.Short() {
		dur = 200 * time.Millisecond
	}
	r := presence.New(presence.WithMaxConsumersPerGroup(per), presence.WithMaxConsumers(groups*per), presence.WithShards(2))
	var keys []presence.Key
	for g := range groups {
		for c := range per {
			keys = append(keys, key("q", fmt.Sprint(g), fmt.Sprint(c)))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var beats, refused, over atomic.Int64
	var firstErr atomic.Value
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := t0
			for n := w; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				now = now.Add(time.Microsecond)
				if err := r.Heartbeat(keys[n%len(keys)], 1, now); err != nil {
					refused.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				beats.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // everything is expired at this now: each pass retires what it finds
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.PruneExpired(t0.Add(time.Hour), time.Nanosecond)
			for g, c := range r.CountByGroup(t0, time.Hour) {
				if c.Total() > per {
					over.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("group %v holds %d", g, c.Total()))
				}
			}
		}
	}()
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	require.Zerof(t, refused.Load(), "%d of %d racing heartbeats refused; first: %v", refused.Load(), beats.Load(), firstErr.Load())
	require.Zero(t, over.Load(), firstErr.Load())
	require.LessOrEqual(t, len(checkRows(t, r, r.Snapshot(t0, time.Hour))), groups*per)

	// Once every consumer beat again, the registry is full for newcomers.
	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, 0, t0.Add(2*time.Hour)))
	}
	err := r.Heartbeat(key("q", "0", "new"), 0, t0.Add(2*time.Hour))
	require.ErrorIs(t, err, presence.ErrTooManyConsumers) // the registry-wide limit is checked first
	require.ErrorIs(t, r.Heartbeat(key("q2", "0", "new"), 0, t0.Add(2*time.Hour)), presence.ErrTooManyConsumers)
	require.Equal(t, groups*per, r.Len())
}
