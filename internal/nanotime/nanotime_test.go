package nanotime

import (
	"math"
	"math/big"
	"testing"
	"time"
)

// refFromTime is FromTime computed exactly with math/big, then clamped.
func refFromTime(t time.Time) int64 {
	v := new(big.Int).Mul(big.NewInt(t.Unix()), big.NewInt(1e9))
	v.Add(v, big.NewInt(int64(t.Nanosecond())))
	if v.Cmp(big.NewInt(Min)) < 0 {
		return Min
	}
	if v.Cmp(big.NewInt(Max)) > 0 {
		return Max
	}
	return v.Int64()
}

func refAge(now, last int64) time.Duration {
	d := new(big.Int).Sub(big.NewInt(now), big.NewInt(last))
	if d.Sign() < 0 {
		return 0
	}
	if d.Cmp(big.NewInt(math.MaxInt64)) > 0 {
		return math.MaxInt64
	}
	return time.Duration(d.Int64())
}

func edgeTimes() []time.Time {
	var ts []time.Time
	for _, s := range []int64{
		math.MinInt64, math.MinInt64 / 2, -maxSec - 2, -maxSec - 1, -maxSec, -maxSec + 1,
		-1, 0, 1, maxSec - 1, maxSec, maxSec + 1, math.MaxInt64 / 2,
		// time.Time's own range is wider than Unix seconds in an int64.
	} {
		for _, ns := range []int64{0, 1, 145224191, 145224192, 145224193, 854775807, 854775808, 999999999} {
			ts = append(ts, time.Unix(s, ns))
		}
	}
	return append(ts, time.Time{}, time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC))
}

func TestFromTimeMatchesBigReference(t *testing.T) {
	for _, tm := range edgeTimes() {
		if got, want := FromTime(tm), refFromTime(tm); got != want {
			t.Errorf("FromTime(%v) = %d, want %d", tm, got, want)
		}
	}
	if FromTime(time.Unix(0, math.MinInt64)) == None {
		t.Error("FromTime returned the None sentinel")
	}
}

func TestToTimeRoundTrips(t *testing.T) {
	for _, ns := range []int64{Min, -1, 0, 1, 1_700_000_000_123_456_789, Max} {
		if got := FromTime(ToTime(ns)); got != ns {
			t.Errorf("FromTime(ToTime(%d)) = %d", ns, got)
		}
	}
}

func TestAgeMatchesBigReference(t *testing.T) {
	vals := []int64{math.MinInt64, Min, -1, 0, 1, math.MaxInt64 - 1, math.MaxInt64, 1e18, -1e18}
	for _, now := range vals {
		for _, last := range vals {
			if got, want := Age(now, last), refAge(now, last); got != want {
				t.Errorf("Age(%d, %d) = %d, want %d", now, last, got, want)
			}
		}
	}
}

func FuzzFromTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(-maxSec-1), int64(145224192))
	f.Add(int64(maxSec), int64(854775808))
	f.Fuzz(func(t *testing.T, s, ns int64) {
		tm := time.Unix(s, ns)
		if got, want := FromTime(tm), refFromTime(tm); got != want {
			t.Fatalf("FromTime(%v) = %d, want %d", tm, got, want)
		}
		if got, want := Age(s, ns), refAge(s, ns); got != want {
			t.Fatalf("Age(%d, %d) = %d, want %d", s, ns, got, want)
		}
	})
}
