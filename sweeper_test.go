package presence_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed351623e9/presence"
)

// sweepAt runs sw with a fixed clock at now for one sweep driven by
// Ticks (and a second that finds nothing more to do), and returns how many
// consumers OnSweep was told were pruned.
func sweepAt(t *testing.T, sw *presence.Sweeper, now time.Time) (pruned int) {
	t.Helper()
	ticks := make(chan time.Time)
	sw.Ticks = ticks
	sw.Now = func() time.Time { return now }
	sw.OnSweep = func(at time.Time, n int) {
		assert.Equal(t, now, at)
		pruned += n
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	ticks <- time.Time{}
	ticks <- time.Time{} // taken once the first sweep is over; the second sweeps nothing new
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	return pruned
}

// sortEvents orders events by kind, then key, for passes whose order
// across shards is not defined.
func sortEvents(es []presence.Event) []presence.Event {
	slices.SortFunc(es, func(a, b presence.Event) int {
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		return presence.CompareKeys(a.Key, b.Key)
	})
	return es
}

// The Sweeper classifies with its own TTL, not DefaultTTL: under a 1 s TTL a
// consumer 3 s old is expired, one 1.5 s old is stale and one just seen is
// active.
func TestSweeperUsesItsTTL(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := presence.New()
	sub := r.Subscribe(0)
	defer sub.Close()
	now := t0.Add(3 * time.Second)
	old, stale, fresh := key("q", "g", "old"), key("q", "g", "stale"), key("q", "g", "fresh")
	beat(t, r, old, 0, t0)
	beat(t, r, stale, 0, now.Add(-1500*time.Millisecond))
	beat(t, r, fresh, 0, now)
	recv(sub)

	assert.Equal(t, 1, sweepAt(t, &presence.Sweeper{Registry: r, TTL: time.Second}, now))
	assert.Equal(t, []presence.Event{
		ev(presence.EventStale, stale, now),
		ev(presence.EventExpired, old, now),
	}, sortEvents(recv(sub)))
	assert.Equal(t, 2, r.Len())
}

// A TTL of zero or below means DefaultTTL: a consumer 45 s old is stale, not
// expired, and one 61 s old is expired.
func TestSweeperZeroTTLMeansDefault(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, ttl := range []time.Duration{0, -time.Second} {
		r := presence.New()
		now := t0.Add(time.Hour)
		beat(t, r, key("q", "g", "stale"), 0, now.Add(-45*time.Second))
		beat(t, r, key("q", "g", "gone"), 0, now.Add(-2*presence.DefaultTTL-time.Second))
		assert.Equal(t, 1, sweepAt(t, &presence.Sweeper{Registry: r, TTL: ttl}, now), "TTL %v", ttl)
		_, ok := r.Lookup(key("q", "g", "stale"), now, presence.DefaultTTL)
		assert.True(t, ok, "TTL %v: a consumer stale under DefaultTTL was removed", ttl)
	}
}

// With Interval set and no Ticks, the Sweeper sweeps on a ticker of that
// interval: a 1 ms interval under a one-hour TTL (whose default interval is
// half an hour) sweeps several times at once. The wait is bounded so that
// an ignored Interval fails the test instead of hanging it.
func TestSweeperUsesItsInterval(t *testing.T) {
	defer goleak.VerifyNone(t)
	swept := make(chan struct{}, 8)
	sw := &presence.Sweeper{
		Registry: presence.New(), TTL: time.Hour, Interval: time.Millisecond,
		OnSweep: func(time.Time, int) {
			select {
			case swept <- struct{}{}:
			default:
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	bound := time.NewTimer(10 * time.Second)
	defer bound.Stop()
	for i := 0; i < 3; i++ {
		select {
		case <-swept:
		case <-bound.C:
			cancel()
			<-done
			t.Fatalf("%d sweeps in 10 s with a 1 ms interval", i)
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// An unset Interval without Ticks is derived from the TTL, and never comes
// out zero or negative (time.NewTicker panics on those), however small the
// TTL. Run with a context that is already done sets up its ticker and
// returns.
func TestSweeperDefaultIntervalFromTinyTTL(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, ttl := range []time.Duration{time.Nanosecond, 2 * time.Nanosecond, 0, -time.Hour} {
		for _, every := range []time.Duration{0, -time.Second} {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			sw := &presence.Sweeper{Registry: presence.New(), TTL: ttl, Interval: every}
			var err error
			require.NotPanics(t, func() { err = sw.Run(ctx) }, "TTL %v, Interval %v", ttl, every)
			assert.ErrorIs(t, err, context.Canceled)
		}
	}
}

// Run with the default Interval (zero or negative) sets up a ticker and
// saves on the way out, without panicking.
func TestCheckpointerRunDefaultInterval(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, every := range []time.Duration{0, -time.Second} {
		path := filepath.Join(t.TempDir(), "presence.ckpt")
		r := presence.New()
		beat(t, r, marker, 3, t0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		cp := &presence.Checkpointer{Registry: r, Path: path, Interval: every}
		var err error
		require.NotPanics(t, func() { err = cp.Run(ctx) }, "Interval %v", every)
		assert.ErrorIs(t, err, context.Canceled)
		r2 := presence.New()
		require.NoError(t, (&presence.Checkpointer{Registry: r2, Path: path}).Load())
		assert.Equal(t, 1, r2.Len(), "Run saves on the way out")
	}
	assert.ErrorIs(t, (&presence.Checkpointer{}).Run(context.Background()), presence.ErrNoPath)
}

// syncBuffer is a bytes.Buffer for a logger written by another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run logs a failed periodic save, and only a failed one; the final save's
// failure is returned with the context's error.
func TestCheckpointerRunLogsFailuresOnly(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, fail := range []bool{false, true} {
		dir := t.TempDir()
		if fail {
			dir = filepath.Join(dir, "missing")
		}
		var log syncBuffer
		ticks := make(chan time.Time)
		cp := &presence.Checkpointer{
			Registry: presence.New(), Path: filepath.Join(dir, "presence.ckpt"), Ticks: ticks,
			Logger: slog.New(slog.NewTextHandler(&log, nil)),
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cp.Run(ctx) }()
		ticks <- time.Time{}
		ticks <- time.Time{} // taken once the first save is over
		cancel()
		err := <-done
		assert.ErrorIs(t, err, context.Canceled)
		if !fail {
			assert.NoError(t, errors.Unwrap(err))
			assert.Empty(t, log.String(), "a successful save was logged")
			continue
		}
		assert.ErrorIs(t, err, fs.ErrNotExist, "the final save's error is returned")
		assert.Contains(t, log.String(), "presence: checkpoint save failed")
		assert.Contains(t, log.String(), cp.Path)
	}
}

// A Save whose rename fails returns the error and removes its temporary
// file; the checkpoint already in place is untouched.
func TestCheckpointerSaveRenameFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "presence.ckpt")
	require.NoError(t, os.Mkdir(path, 0o700)) // a non-empty directory where the file should go
	require.NoError(t, os.WriteFile(filepath.Join(path, "keep"), []byte("x"), 0o600))
	r := presence.New()
	populate(t, r)
	err := (&presence.Checkpointer{Registry: r, Path: path}).Save()
	assert.Error(t, err)
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	assert.Empty(t, left, "a failed save left its temporary file")
	entries, _ := os.ReadDir(path)
	assert.Len(t, entries, 1)
}
