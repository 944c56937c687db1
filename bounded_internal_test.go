package presence

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of retry loops that must end. Each runs the operation on a
// goroutine and fails after a generous bound instead of hanging until the
// test binary's timeout, so that a loop that never ends (a real bug) is a
// failure that names itself. They are in the package itself, not in
// presence_test, because go test runs a package's own test files first:
// with -failfast (as gremlins runs it) a broken loop fails here before any
// unbounded test reaches it and hangs.

// stopIfFailed ends the test binary with status 1 once t is over, if t
// failed. These tests cover loops that a bug can make endless; when one of
// them fails, the tests and examples after it may hang on the same bug
// (-failfast does not stop examples), so the binary stops here. The
// assertion messages are lost with the buffered test output: run the test
// alone to see them.
func stopIfFailed(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Fprintf(os.Stderr, "--- FAIL: %s (stopping; run it alone with -run for its messages)\n", t.Name())
			os.Exit(1)
		}
	})
}

// within runs f on its own goroutine and, if it has not returned after d,
// reports the hang and ends the test binary with status 1. Failing the test
// alone is not enough: the stuck goroutine would then hang the examples,
// which go test runs even after -failfast stopped the tests.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		fmt.Fprintf(os.Stderr, "--- FAIL: %s: %s did not return within %v\n", t.Name(), what, d)
		os.Exit(1)
	}
}

// A group whose last consumer left comes back with the next registration
// into it: the registration's retry past the dead group ends.
func TestGroupComesBack(t *testing.T) {
	stopIfFailed(t)
	r := New()
	k := Key{Queue: "q", Group: "g", Consumer: "c"}
	for i := 0; i < 3; i++ {
		within(t, 10*time.Second, "a registration into a group that just died", func() {
			assert.NoError(t, r.Heartbeat(k, 0, time.Unix(1_000, 0)))
		})
		groups, queues := r.IndexSizes()
		assert.Equal(t, [2]int{1, 1}, [2]int{groups, queues}, "round %d", i)
		require.True(t, r.Deregister(k))
		groups, queues = r.IndexSizes()
		assert.Equal(t, [2]int{0, 0}, [2]int{groups, queues}, "round %d", i)
	}
}

// A Handle whose cached entry was removed, and whose consumer was then
// registered again by key, finds the live entry on its slow path and beats
// it: the registration's retry loop ends, and only a beat older by more
// than the clock step counts as a clock step.
func TestHandleBeatsReplacedEntry(t *testing.T) {
	stopIfFailed(t)
	t0 := time.Unix(1_000, 0).UTC()
	r := New(WithCounters())
	k := Key{Queue: "q", Group: "g", Consumer: "c"}
	h := r.Handle(k)
	require.NoError(t, h.Heartbeat(1, t0))
	require.True(t, r.Deregister(k))
	require.NoError(t, r.Heartbeat(k, 2, t0.Add(time.Minute))) // a new entry; h still holds the old one

	within(t, 10*time.Second, "a Handle beat onto a replaced entry", func() {
		assert.NoError(t, h.Heartbeat(3, t0.Add(2*time.Minute)))
	})
	c, ok := r.Lookup(k, t0, DefaultTTL)
	require.True(t, ok)
	assert.EqualValues(t, 3, c.Leases)
	assert.Equal(t, t0.Add(2*time.Minute), c.LastHeartbeat)
	assert.Zero(t, r.Counters().ClockSteps)

	// The same path, with a beat from a clock more than a step behind.
	require.True(t, r.Deregister(k))
	require.NoError(t, r.Heartbeat(k, 2, t0.Add(time.Hour)))
	within(t, 10*time.Second, "a Handle beat onto a replaced entry", func() {
		assert.NoError(t, h.Heartbeat(4, t0.Add(time.Hour-DefaultMaxClockStep-time.Second)))
	})
	assert.EqualValues(t, 1, r.Counters().ClockSteps)
	assert.Equal(t, 1, r.Len())
}

// ReadFrom of a checkpoint with blocks of several sizes, through both of
// its paths, ends: the loop that reads a block's payload in growing chunks
// stops when the payload is whole.
func TestReadFromEnds(t *testing.T) {
	stopIfFailed(t)
	src := New()
	for i := 0; i < 3000; i++ {
		k := Key{Queue: "q", Group: fmt.Sprint(i % 7), Consumer: fmt.Sprint("consumer-", i)}
		require.NoError(t, src.Heartbeat(k, 1, time.Unix(1_000, 0)))
	}
	var buf bytes.Buffer
	_, err := src.WriteTo(&buf)
	require.NoError(t, err)
	for _, seekable := range []bool{true, false} {
		r := New()
		within(t, 10*time.Second, fmt.Sprint("ReadFrom, seekable=", seekable), func() {
			var err error
			if seekable {
				_, err = r.ReadFrom(bytes.NewReader(buf.Bytes()))
			} else {
				_, err = r.ReadFrom(struct{ io.Reader }{bytes.NewReader(buf.Bytes())})
			}
			assert.NoError(t, err)
		})
		assert.Equal(t, 3000, r.Len())
	}
}

// PruneExpired ends, and removes exactly the expired consumer and the one
// whose heartbeat is more than the clock step ahead of now; one exactly a
// step ahead stays.
func TestPruneExpiredEnds(t *testing.T) {
	stopIfFailed(t)
	now := time.Unix(1_000_000, 0).UTC()
	r := New(WithCounters())
	keys := map[string]time.Time{
		"active":          now.Add(-time.Second),
		"expired":         now.Add(-time.Hour),
		"one step ahead":  now.Add(DefaultMaxClockStep),
		"past a step":     now.Add(DefaultMaxClockStep + 1),
		"beat at now":     now,
		"just registered": now.Add(-DefaultTTL),
	}
	for c, at := range keys {
		require.NoError(t, r.Heartbeat(Key{Queue: "q", Group: "g", Consumer: c}, 0, at))
	}
	var n int
	within(t, 10*time.Second, "PruneExpired", func() { n = r.PruneExpired(now, DefaultTTL) })
	assert.Equal(t, 2, n)
	for c := range keys {
		_, ok := r.Lookup(Key{Queue: "q", Group: "g", Consumer: c}, now, DefaultTTL)
		assert.Equal(t, c != "expired" && c != "past a step", ok, "%s", c)
	}
	assert.EqualValues(t, 1, r.Counters().ClockSteps, "the consumer a clock step ahead")
	assert.EqualValues(t, 2, r.Counters().Expired)
}

// WithShards rounds up to a power of two (at most 65536); n <= 0 keeps
// the default of four shards per P, rounded.
func TestShardCounts(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 1000: 1024} {
		assert.Equal(t, want, New(WithShards(n)).Shards(), "WithShards(%d)", n)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	def := New().Shards()
	assert.Equal(t, 16, def, "the default for 3 Ps: 12, rounded up")
	assert.Equal(t, def, New(WithShards(0)).Shards())
	assert.Equal(t, def, New(WithShards(-5)).Shards())
}

// A Sweeper or Checkpointer configured with Ticks runs on them: each value
// sent is taken within the bound, and Run ends when the context does.
func TestTicksDriveRuns(t *testing.T) {
	stopIfFailed(t)
	r := New()
	path := t.TempDir() + "/presence.ckpt"
	runs := map[string]func(ctx context.Context, ticks chan time.Time) error{
		"Sweeper": func(ctx context.Context, ticks chan time.Time) error {
			return (&Sweeper{Registry: r, Interval: time.Hour, Ticks: ticks}).Run(ctx)
		},
		"Checkpointer": func(ctx context.Context, ticks chan time.Time) error {
			return (&Checkpointer{Registry: r, Path: path, Interval: time.Hour, Ticks: ticks}).Run(ctx)
		},
	}
	for name, run := range runs {
		ticks := make(chan time.Time)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, ticks) }()
		for i := 0; i < 2; i++ {
			select {
			case ticks <- time.Time{}:
			case err := <-done:
				t.Fatalf("%s.Run returned %v instead of taking ticks", name, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("%s.Run took no tick within 10s", name)
			}
		}
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled, name)
	}
}

// Events reach a subscriber as they are emitted, with no waiting: a test
// that blocks on the channel for them would hang, not fail, if they never
// came.
func TestEventsArrive(t *testing.T) {
	stopIfFailed(t)
	t0 := time.Unix(1_000, 0).UTC()
	r := New()
	sub := r.Subscribe(8)
	defer sub.Close()
	k := Key{Queue: "q", Group: "g", Consumer: "c"}
	require.NoError(t, r.Heartbeat(k, 0, t0))
	r.PruneExpired(t0.Add(DefaultTTL+1), DefaultTTL)
	var kinds []EventKind
drain:
	for {
		select {
		case e := <-sub.C:
			kinds = append(kinds, e.Kind)
		default:
			break drain
		}
	}
	assert.Equal(t, []EventKind{EventJoined, EventStale}, kinds)
}
