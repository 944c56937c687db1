package presence

import "time"

// NextWait returns the wait that Run, with o, takes after a flush that gave
// r, when the wait before it was prev.
func NextWait(o RunOptions, prev time.Duration, r FlushResult) time.Duration {
	return o.withDefaults().next(prev, r)
}
