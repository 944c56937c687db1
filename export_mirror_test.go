package presence

import "time"

// NextWait returns the wait that Run, with o, takes after a flush that gave
// r, when the wait before it was prev.
func NextWait(o RunOptions, prev time.Duration, r FlushResult) time.Duration {
	return o.withDefaults().next(prev, r)
}

// ApplyBatch does to rows what a store does with batch bt, deletes first:
// the write of the tests' in-memory backends.
func ApplyBatch(rows map[Key]Consumer, bt Batch) {
	for _, k := range bt.Deletes {
		delete(rows, k)
	}
	for _, c := range bt.Writes {
		rows[c.Key] = c
	}
}
