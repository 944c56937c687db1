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

// Every load runs against both implementations that take part, and the
// heartbeats it times all succeed (Tail fails the benchmark otherwise).
func TestTailRunsEveryLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs benchmarks")
	}
	for _, l := range Loads {
		for _, impl := range []Impl{RegistryImpl, MutexImpl} {
			if _, ok := loadFunc(impl.New(Keys(10), T0), l, 10); !ok {
				continue
			}
			br := testing.Benchmark(func(b *testing.B) { Tail(b, impl, 1000, l, 20*time.Millisecond) })
			if br.N == 0 || br.Extra["p50-ns"] <= 0 || br.Extra["max-ns"] < br.Extra["p999-ns"] {
				t.Errorf("%s under %s: %+v", impl.Name, l, br.Extra)
			}
		}
	}
}
