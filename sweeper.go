package presence

import (
	"context"
	"errors"
	"time"
)

// Sweeper runs PruneExpired on a timer, so that dead consumers leave the
// registry and Stale, Revived and Expired events are emitted without the
// broker calling anything. Configure its fields, then call Run; a Sweeper
// must not be changed while it runs.
type Sweeper struct {
	// Registry is the registry to sweep. Required.
	Registry *Registry
	// TTL is the heartbeat budget the sweeps classify with; zero or
	// negative means DefaultTTL.
	TTL time.Duration
	// Interval is the time between sweeps; zero or negative means TTL/2,
	// so that a consumer is removed at most half a TTL after it expires.
	Interval time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Ticks, if set, replaces the internal ticker: each value received
	// starts a sweep, and closing it ends Run, which then returns nil.
	// Tests drive sweeps with it, without sleeping.
	Ticks <-chan time.Time
	// OnSweep, if set, is called after every sweep with its now and the
	// number of consumers it removed.
	OnSweep func(now time.Time, pruned int)
}

// ErrNoRegistry is returned by Sweeper.Run without a Registry.
var ErrNoRegistry = errors.New("presence: sweeper has no registry")

// Run sweeps until ctx is done, then returns ctx's error, or until Ticks is
// closed, then returns nil. It starts no
// goroutine: the sweeps run on the caller's, and a sweep in progress when
// ctx is done completes before Run returns.
func (s *Sweeper) Run(ctx context.Context) error {
	if s.Registry == nil {
		return ErrNoRegistry
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	every := s.Interval
	if every <= 0 {
		every = max(ttl/2, time.Millisecond)
	}
	ticks, stop := tickerOr(s.Ticks, every)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ticks:
			if !ok {
				return nil // Ticks was closed: no more sweeps
			}
			at := now()
			n := s.Registry.PruneExpired(at, ttl)
			if s.OnSweep != nil {
				s.OnSweep(at, n)
			}
		}
	}
}

// tickerOr returns ticks if it is set, else the channel of a new ticker
// firing every every; stop releases the ticker.
func tickerOr(ticks <-chan time.Time, every time.Duration) (c <-chan time.Time, stop func()) {
	if ticks != nil {
		return ticks, func() {}
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}
