// Package nanotime converts between time.Time and int64 Unix nanoseconds
// without wrapping at the edges of the int64 range.
//
// time.Time.UnixNano is undefined for dates before 1678 or after 2262; the
// registry must give a defined answer for any time.Time it is handed, so
// every conversion here saturates instead.
package nanotime

import (
	"math"
	"time"
)

// None is the one int64 value that never denotes a time, since FromTime
// never returns it. It stands for "no time" wherever a time word needs one:
// in an entry's heartbeat word it marks the entry retired (removed); as an
// entry's active time it means no heartbeat reported leases; as an event's
// time it means the event has none.
const None = math.MinInt64

// Min and Max are the smallest and largest nanosecond values FromTime
// returns.
const (
	Min = math.MinInt64 + 1
	Max = math.MaxInt64
)

// maxSec is the largest whole second s for which s*1e9 fits in an int64.
const maxSec int64 = 9223372036 // math.MaxInt64 / 1e9, truncated

// FromTime returns t as Unix nanoseconds, clamped to [Min, Max].
func FromTime(t time.Time) int64 {
	s, ns := t.Unix(), int64(t.Nanosecond())
	if s > -maxSec && s < maxSec {
		return s*1e9 + ns // cannot overflow: |s*1e9| < 9223372036e9
	}
	switch {
	case s > maxSec:
		return Max
	case s == maxSec:
		if ns > Max-maxSec*1e9 {
			return Max
		}
		return s*1e9 + ns
	case s == -maxSec:
		return s*1e9 + ns // -9223372036e9 + ns > Min
	case s == -maxSec-1:
		// s*1e9 alone overflows; add the negative remainder to (s+1)*1e9
		// instead, which lands at or above Min whenever the true value does.
		rem := ns - 1e9 // in [-1e9, 0)
		if (s+1)*1e9 < Min-rem {
			return Min
		}
		return (s+1)*1e9 + rem
	default:
		return Min
	}
}

// ToTime returns the UTC time for Unix nanoseconds ns.
func ToTime(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}

// Age returns now-last as a Duration, clamped to [0, math.MaxInt64]: a clock
// behind the heartbeat gives 0, and a span wider than an int64 saturates.
func Age(now, last int64) time.Duration {
	if now <= last {
		return 0
	}
	d := uint64(now) - uint64(last) // exact: now > last, so no wrap in uint64
	if d > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
