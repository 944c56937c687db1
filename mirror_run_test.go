package presence_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// errRefused is an error the store replies with while it is up: memBackend
// tells it from errDown (see Replied).
var errRefused = errors.New("refused: failing over")

// Replied makes memBackend a presence.Replier: errRefused is a reply.
func (b *memBackend) Replied(err error) bool { return errors.Is(err, errRefused) }

// The wait after a flush: the interval after success, Retry (by default
// min(Interval, 250ms)) after a failure that the store answered, and
// exponential backoff from the interval up to MaxBackoff after one it did
// not answer.
func TestRunWaits(t *testing.T) {
	ok := presence.FlushResult{Reached: true, Answered: true}
	down := presence.FlushResult{Failed: map[int]error{0: errDown}}
	partial := presence.FlushResult{Failed: map[int]error{0: errDown}, Reached: true, Answered: true}
	var o presence.RunOptions
	assert.Equal(t, time.Second, presence.NextWait(o, 4*time.Second, ok))
	assert.Equal(t, 250*time.Millisecond, presence.NextWait(o, 4*time.Second, partial))
	w := time.Second
	var waits []time.Duration
	for range 5 {
		w = presence.NextWait(o, w, down)
		waits = append(waits, w)
	}
	assert.Equal(t, []time.Duration{2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}, waits)
	assert.Equal(t, time.Second, presence.NextWait(o, 5*time.Second, ok), "back to the interval")

	fast := presence.RunOptions{Interval: 100 * time.Millisecond}
	assert.Equal(t, 100*time.Millisecond, presence.NextWait(fast, time.Second, partial))
	assert.Equal(t, 200*time.Millisecond, presence.NextWait(fast, 100*time.Millisecond, down))
	own := presence.RunOptions{Retry: time.Millisecond, MaxBackoff: time.Minute}
	assert.Equal(t, time.Millisecond, presence.NextWait(own, time.Second, partial))
	assert.Equal(t, time.Minute, presence.NextWait(own, 40*time.Second, down))
}

// A flush says whether the store answered: some part worked (Reached), or
// the store replied with its error (a presence.Replier tells). Run backs
// off only when it did not.
func TestFlushAnswered(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{})
	fill(t, r, 2, 3)
	ctx := context.Background()

	b.set(func() { b.down[0], b.down[1] = errDown, errDown })
	res := m.Flush(ctx)
	assert.False(t, res.Reached)
	assert.False(t, res.Answered, "no part answered")

	b.set(func() { b.down[1] = errRefused })
	res = m.Flush(ctx)
	assert.False(t, res.Reached)
	assert.True(t, res.Answered, "part 1 replied with its refusal")

	b.set(func() { delete(b.down, 1) })
	res = m.Flush(ctx)
	assert.True(t, res.Reached, "part 1 took its batch")
	assert.True(t, res.Answered)
	require.ErrorIs(t, res.Err(), errDown)

	b.set(func() { clear(b.down) })
	res = m.Flush(ctx)
	require.NoError(t, res.Err())
	assert.True(t, res.Reached && res.Answered)
	assert.Equal(t, live(r, -1), b.stored(-1))

	// A part whose check fails with a reply, while nothing is to be written.
	b.set(func() { b.down[0] = errRefused })
	res = m.Flush(ctx)
	assert.True(t, res.Answered)
	assert.False(t, res.Reached)
}

// flushes records what Run reports, and cancels Run after n flushes.
type flushes struct {
	mu     sync.Mutex
	res    []presence.FlushResult
	waits  []time.Duration
	n      int
	cancel context.CancelFunc
	before func(i int) // called before flush i+1 is recorded, if set
}

func (f *flushes) onFlush(r presence.FlushResult, next time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = append(f.res, r)
	f.waits = append(f.waits, next)
	if f.before != nil {
		f.before(len(f.res))
	}
	if len(f.res) == f.n {
		f.cancel()
	}
}

// Run backs off while the store does not answer, retries soon while it
// refuses, flushes on the interval once it works, and flushes once more
// when its context ends, returning the context's error.
func TestMirrorRun(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{})
	fill(t, r, 2, 5)
	b.set(func() { b.down[0], b.down[1] = errDown, errDown })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &flushes{n: 9, cancel: cancel}
	f.before = func(i int) {
		switch i { // the store's state for the next flush
		case 4:
			b.set(func() { b.down[0], b.down[1] = errRefused, errRefused })
		case 6:
			b.set(func() { clear(b.down) })
		case 9:
			// for the final flush (on Run's goroutine: no require)
			assert.NoError(t, r.Heartbeat(key("q", "0-0", "late"), 1, t0))
		}
	}
	opt := presence.RunOptions{Interval: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Retry: 2 * time.Millisecond, OnFlush: f.onFlush}
	err := m.Run(ctx, opt)
	require.ErrorIs(t, err, context.Canceled)

	ms := time.Millisecond
	assert.Equal(t, []time.Duration{2 * ms, 4 * ms, 5 * ms, 5 * ms, 2 * ms, 2 * ms, ms, ms, ms, 0}, f.waits,
		"backoff, retry, interval, then the final flush")
	assert.Equal(t, 10, f.res[6].Written, "all written once the store is back")
	assert.Equal(t, 1, f.res[9].Written, "the final flush wrote the late beat")
	assert.Equal(t, live(r, -1), b.stored(-1))

	// A final flush that fails is in Run's error.
	b.set(func() { b.down[0] = errDown })
	beat(t, r, key("q", "0-0", "later"), 1, t0)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = m.Run(ctx, presence.RunOptions{})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, errDown)
}

// A store that loses writes without a sign of it (its Check cannot tell)
// is repaired by Run's periodic resync, and only by it.
func TestMirrorRunResync(t *testing.T) {
	for _, every := range []time.Duration{time.Nanosecond, -1} {
		t.Run(fmt.Sprint("every=", every), func(t *testing.T) {
			r := presence.New()
			b := newMemBackend()
			m := presence.NewMirror(r, b, presence.MirrorOptions{})
			fill(t, r, 2, 5)
			require.NoError(t, m.Flush(context.Background()).Err())
			b.set(func() { clear(b.rows) }) // lost, unnoticed
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := &flushes{n: 2, cancel: cancel}
			require.ErrorIs(t, m.Run(ctx, presence.RunOptions{Interval: time.Millisecond, ResyncEvery: every, OnFlush: f.onFlush}), context.Canceled)
			if every > 0 {
				assert.Equal(t, 10, f.res[0].Written, "every consumer resent")
				assert.Equal(t, live(r, -1), b.stored(-1))
			} else {
				assert.Zero(t, f.res[0].Written)
				assert.Empty(t, b.stored(-1), "no resync: the loss stays")
			}
		})
	}
}

// flapper drives a memBackend's failures from Run's reports (OnFlush),
// which come between flushes, so each report sets the store up for the
// next flush. Its phases: 0 while writers run, parts fail, refuse and lose
// data; 1, every part fails, in each way in turn (a loss would resend what
// a bug dropped, and a healthy part would write it before it met a
// failure); 2, the store is whole.
type flapper struct {
	b       *memBackend
	runs    atomic.Int64
	phase   atomic.Int32
	settled chan struct{} // a report was made in phase 2
}

func (f *flapper) onFlush(presence.FlushResult, time.Duration) {
	i := f.runs.Add(1)
	b, phase := f.b, f.phase.Load()
	b.set(func() {
		clear(b.down)
		clear(b.badWrite)
		switch phase {
		case 0:
			b.fail(int(i/4)%3, i%4)
			b.lostOnce[int(i)%3] = i%7 == 0
		case 1:
			for p := range 3 {
				b.fail(p, 1+(i+int64(p))%3)
			}
		case 2:
			clear(b.lostOnce)
		}
	})
	switch {
	case phase == 0 && i%5 == 0:
		b.wipe(int(i) % 3)
	case phase == 2:
		select {
		case f.settled <- struct{}{}:
		default:
		}
	}
}

// waitFlushes returns once Run has reported n more flushes.
func (f *flapper) waitFlushes(n int64) {
	for after := f.runs.Load() + n; f.runs.Load() < after; {
		time.Sleep(100 * time.Microsecond)
	}
}

// fail makes part p fail the next flush: 1 down (Check and Write fail),
// 2 refusing (the same, with a reply), 3 failing its writes only; 0 not.
// The caller holds b.mu.
func (b *memBackend) fail(p int, mode int64) {
	switch mode {
	case 1:
		b.down[p] = errDown
	case 2:
		b.down[p] = errRefused
	case 3:
		b.badWrite[p] = errDown
	}
}

// churnKey is the i-th of the 69 keys, over three parts, that
// TestMirrorRunConcurrent's writers churn.
func churnKey(i int) presence.Key { return key("q", fmt.Sprintf("%d-x", i%3), fmt.Sprint(i%23)) }

// Writers register, beat and deregister while Run flushes into a store
// whose parts fail, refuse and lose their data. Once the writers stop, and
// their last changes went through failing flushes, and the store is whole,
// Run's final flush leaves the store equal to the registry: no write and
// no delete is lost.
func TestMirrorRunConcurrent(t *testing.T) {
	ops, flushesDuring := 20000, int64(300)
	if testing.Short() {
		ops, flushesDuring = 3000, 50
	}
	r := presence.New()
	f := &flapper{b: newMemBackend(), settled: make(chan struct{})}
	m := presence.NewMirror(r, f.b, presence.MirrorOptions{Batch: 5})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- m.Run(ctx, presence.RunOptions{Interval: 50 * time.Microsecond, MaxBackoff: time.Millisecond, OnFlush: f.onFlush})
	}()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ops || f.phase.Load() == 0; i++ {
				if (i+w)%4 == 0 {
					r.Deregister(churnKey(i))
				} else {
					_ = r.Heartbeat(churnKey(i), 1, t0.Add(time.Duration(i)*time.Millisecond))
				}
			}
		}()
	}
	for f.runs.Load() < flushesDuring {
		time.Sleep(time.Millisecond)
	}
	f.phase.Store(1)
	wg.Wait()
	f.waitFlushes(2)        // the flushes from now on fail
	for i := range 3 * 23 { // a last change to every key
		if i%2 == 0 {
			r.Deregister(churnKey(i))
		} else {
			beat(t, r, churnKey(i), 2, t0.Add(time.Hour))
		}
	}
	f.waitFlushes(9)
	f.phase.Store(2)
	<-f.settled // the next flush, the final one, meets a whole store
	cancel()
	require.ErrorIs(t, <-ran, context.Canceled)
	assert.Equal(t, live(r, -1), f.b.stored(-1))
	t.Logf("%d flushes", f.runs.Load())
}
