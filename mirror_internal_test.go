package presence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The zero RunOptions get the defaults RunOptions documents; a field set
// by the caller is kept, and a negative ResyncEvery (disabled) stays so.
func TestRunOptionsDefaults(t *testing.T) {
	assert.Equal(t, RunOptions{
		Interval:     time.Second,
		MaxBackoff:   5 * time.Second,
		Retry:        250 * time.Millisecond,
		ResyncEvery:  5 * time.Minute,
		FinalTimeout: 5 * time.Second,
	}, RunOptions{}.withDefaults())
	own := RunOptions{
		Interval:     time.Millisecond,
		MaxBackoff:   time.Minute,
		Retry:        2 * time.Millisecond,
		ResyncEvery:  -1,
		FinalTimeout: 3 * time.Second,
	}
	assert.Equal(t, own, own.withDefaults())
}

// ctxBackend is a one-part Backend that, like a real store client, fails
// every call made with a context that is already done.
type ctxBackend struct{ rows map[Key]Consumer }

func (b *ctxBackend) PartOf(GroupKey) int { return 0 }

func (b *ctxBackend) Check(ctx context.Context) []PartCheck {
	return []PartCheck{{Part: 0, Err: ctx.Err()}}
}

func (b *ctxBackend) Write(ctx context.Context, batches []Batch) []BatchResult {
	out := make([]BatchResult, len(batches))
	for i, bt := range batches {
		if err := ctx.Err(); err != nil {
			out[i].Err = err
			continue
		}
		ApplyBatch(b.rows, bt)
		out[i].Written = len(bt.Writes)
	}
	return out
}

func (b *ctxBackend) Each(_ context.Context, fn func(Consumer)) error {
	for _, c := range b.rows {
		fn(c)
	}
	return nil
}

// Run whose context is already done makes its final flush with a context
// of its own, alive for FinalTimeout (5s by default), so that the flush
// goes through; it reports that flush to OnFlush, with a wait of 0, and
// needs no OnFlush. Bounded: a Run that ignored its context would hang.
func TestRunFinalFlush(t *testing.T) {
	stopIfFailed(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, withReport := range []bool{true, false} {
		r := New()
		b := &ctxBackend{rows: map[Key]Consumer{}}
		m := NewMirror(r, b, MirrorOptions{})
		k := Key{Queue: "q", Group: "g", Consumer: "c"}
		assert.NoError(t, r.Heartbeat(k, 1, time.Unix(1_000, 0)))
		var reports []FlushResult
		var waits []time.Duration
		opt := RunOptions{}
		if withReport {
			opt.OnFlush = func(res FlushResult, next time.Duration) {
				reports = append(reports, res)
				waits = append(waits, next)
			}
		}
		var err error
		within(t, 10*time.Second, "Run with a done context", func() { err = m.Run(ctx, opt) })
		assert.ErrorIs(t, err, context.Canceled)
		assert.True(t, errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded),
			"the final flush went through: %v", err)
		assert.Len(t, b.rows, 1, "the final flush wrote the consumer")
		if withReport {
			if assert.Len(t, reports, 1, "OnFlush saw the final flush") {
				assert.Equal(t, 1, reports[0].Written)
				assert.Equal(t, []time.Duration{0}, waits)
			}
		}
	}
}
