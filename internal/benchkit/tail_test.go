package benchkit

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		got := h.quantile(c.p)
		// A bucket spans 1/16 of its lower bound.
		if got > float64(c.want) || got < float64(c.want)*15/16 {
			t.Errorf("quantile(%v) = %v, want within 1/16 below %v", c.p, time.Duration(got), c.want)
		}
	}
	if h.max != time.Millisecond {
		t.Errorf("max = %v", h.max)
	}
	for i := 0; i < 63*16; i++ { // the last power of two overflows a Duration
		if b := bucketOf(time.Duration(lowerBound(i))); i >= 64 || i < 16 {
			if b != i {
				t.Fatalf("bucketOf(lowerBound(%d)) = %d", i, b)
			}
		}
	}
}
