package presence

import "time"

// SweepEvery returns the interval a Sweeper with TTL ttl and no Interval
// sweeps r at.
func SweepEvery(r *Registry, ttl time.Duration) time.Duration { return r.sweepEvery(ttl) }
