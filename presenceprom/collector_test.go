package presenceprom_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceprom"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestCollector(t *testing.T) {
	r := presence.New(presence.WithCounters(), presence.WithMaxConsumers(3))
	k := func(g, c string) presence.Key { return presence.Key{Queue: "orders", Group: g, Consumer: c} }
	require.NoError(t, r.Heartbeat(k("workers", "w1"), 0, t0))
	require.NoError(t, r.Heartbeat(k("workers", "w1"), 0, t0))
	require.NoError(t, r.Heartbeat(k("workers", "w2"), 0, t0.Add(-45*time.Second)))
	require.NoError(t, r.Heartbeat(k("audit", "a1"), 0, t0.Add(-time.Hour)))
	require.ErrorIs(t, r.Heartbeat(k("audit", "a2"), 0, t0), presence.ErrTooManyConsumers)

	c := presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }})
	want := `
# HELP presence_consumers Consumers by queue, group and state (active, stale, expired) at scrape time; queue=group="__other__" sums the groups beyond the cap.
# TYPE presence_consumers gauge
presence_consumers{group="audit",queue="orders",state="active"} 0
presence_consumers{group="audit",queue="orders",state="expired"} 1
presence_consumers{group="audit",queue="orders",state="stale"} 0
presence_consumers{group="workers",queue="orders",state="active"} 1
presence_consumers{group="workers",queue="orders",state="expired"} 0
presence_consumers{group="workers",queue="orders",state="stale"} 1
# HELP presence_groups Consumer groups (queue, group) with at least one consumer at scrape time, exported or not.
# TYPE presence_groups gauge
presence_groups 2
# HELP presence_heartbeats_total Heartbeats recorded, by key or by handle.
# TYPE presence_heartbeats_total counter
presence_heartbeats_total 4
# HELP presence_registrations_total Consumers registered, including registrations after removal and restores.
# TYPE presence_registrations_total counter
presence_registrations_total 3
# HELP presence_rejections_total Registrations refused by a consumer limit.
# TYPE presence_rejections_total counter
presence_rejections_total 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"presence_consumers", "presence_groups", "presence_heartbeats_total", "presence_registrations_total", "presence_rejections_total"))

	// After a prune the expired group disappears from the gauge.
	assert.Equal(t, 1, r.PruneExpired(t0, presence.DefaultTTL))
	assert.Equal(t, 3, testutil.CollectAndCount(c, "presence_consumers"))
	assert.Equal(t, 1.0, testutil.ToFloat64(counter(t, c, "presence_pruned_total")))
}

// A heartbeat taken as the correction of a clock error is counted.
func TestClockSteps(t *testing.T) {
	r := presence.New() // kept with or without WithCounters
	k := presence.Key{Queue: "q", Group: "g", Consumer: "c"}
	require.NoError(t, r.Heartbeat(k, 0, t0.Add(24*time.Hour)))
	require.NoError(t, r.Heartbeat(k, 0, t0))
	assert.Equal(t, 1.0, testutil.ToFloat64(counter(t, presenceprom.New(r, presenceprom.Options{}), "presence_clock_steps_total")))
}

// counter extracts one scalar metric from the collector.
func counter(t *testing.T, c prometheus.Collector, name string) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := mf.GetMetric()[0].GetCounter().GetValue()
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return v })
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func TestLint(t *testing.T) {
	r := presence.New(presence.WithCounters())
	require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: "c"}, 0, t0))
	problems, err := testutil.CollectAndLint(presenceprom.New(r, presenceprom.Options{}))
	require.NoError(t, err)
	assert.Empty(t, problems)
	// A pedantic registry checks Describe against Collect.
	require.NoError(t, prometheus.NewPedanticRegistry().Register(presenceprom.New(r, presenceprom.Options{})))
}

// scrape gathers c through a pedantic registry, which rejects duplicate
// series and label values that are not valid UTF-8, and returns one line
// per series: name{labels sorted by name} value.
func scrape(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() { // sorted by name
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			if len(labels) > 0 {
				fmt.Fprintf(&b, "%s{%s} %g\n", mf.GetName(), strings.Join(labels, ","), v)
			} else {
				fmt.Fprintf(&b, "%s %g\n", mf.GetName(), v)
			}
		}
	}
	return b.String()
}

// Beyond MaxGroups the largest groups are exported and the rest summed into
// the "__other__" label set; ties go to the smaller name.
func TestMaxGroupsFoldsTheRest(t *testing.T) {
	r := presence.New()
	sizes := map[string]int{"a": 1, "b": 3, "c": 1, "d": 2, "e": 1}
	for g, n := range sizes {
		for i := range n {
			require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: g, Consumer: fmt.Sprint(i)}, 0, t0))
		}
	}
	require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: "e", Consumer: "old"}, 0, t0.Add(-time.Hour)))
	c := presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }, MaxGroups: 3})
	want := `
# HELP presence_consumers Consumers by queue, group and state (active, stale, expired) at scrape time; queue=group="__other__" sums the groups beyond the cap.
# TYPE presence_consumers gauge
presence_consumers{group="__other__",queue="__other__",state="active"} 2
presence_consumers{group="__other__",queue="__other__",state="expired"} 0
presence_consumers{group="__other__",queue="__other__",state="stale"} 0
presence_consumers{group="b",queue="q",state="active"} 3
presence_consumers{group="b",queue="q",state="expired"} 0
presence_consumers{group="b",queue="q",state="stale"} 0
presence_consumers{group="d",queue="q",state="active"} 2
presence_consumers{group="d",queue="q",state="expired"} 0
presence_consumers{group="d",queue="q",state="stale"} 0
presence_consumers{group="e",queue="q",state="active"} 1
presence_consumers{group="e",queue="q",state="expired"} 1
presence_consumers{group="e",queue="q",state="stale"} 0
# HELP presence_groups Consumer groups (queue, group) with at least one consumer at scrape time, exported or not.
# TYPE presence_groups gauge
presence_groups 5
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "presence_consumers", "presence_groups"))

	// No cap: every group.
	all := presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }, MaxGroups: -1})
	assert.Equal(t, 15, testutil.CollectAndCount(all, "presence_consumers"))
}

// ByQueue sums the groups of each queue; the cap then counts queues.
func TestByQueue(t *testing.T) {
	r := presence.New()
	for _, k := range []presence.Key{{Queue: "orders", Group: "workers", Consumer: "w1"}, {Queue: "orders", Group: "audit", Consumer: "a1"}, {Queue: "billing", Group: "x", Consumer: "b1"}, {Queue: "mail", Group: "x", Consumer: "m1"}} {
		require.NoError(t, r.Heartbeat(k, 0, t0))
	}
	c := presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }, ByQueue: true, MaxGroups: 2})
	want := `
# HELP presence_consumers Consumers by queue and state (active, stale, expired) at scrape time; queue="__other__" sums the queues beyond the cap.
# TYPE presence_consumers gauge
presence_consumers{queue="__other__",state="active"} 1
presence_consumers{queue="__other__",state="expired"} 0
presence_consumers{queue="__other__",state="stale"} 0
presence_consumers{queue="billing",state="active"} 1
presence_consumers{queue="billing",state="expired"} 0
presence_consumers{queue="billing",state="stale"} 0
presence_consumers{queue="orders",state="active"} 2
presence_consumers{queue="orders",state="expired"} 0
presence_consumers{queue="orders",state="stale"} 0
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "presence_consumers"))
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// Names are bytes, label values UTF-8: a name that is not valid UTF-8 is
// exported with U+FFFD and never panics the scrape; names that then
// coincide, and a real group named like the Other set, are summed rather
// than exported twice.
func TestLabelValuesStayValid(t *testing.T) {
	r := presence.New()
	for _, k := range []presence.Key{
		{Queue: "q", Group: "\xff", Consumer: "1"},
		{Queue: "q", Group: "\xfe", Consumer: "1"},
		{Queue: "q", Group: "\uFFFD", Consumer: "1"},
		{Queue: presenceprom.Other, Group: presenceprom.Other, Consumer: "1"},
		{Queue: "q", Group: "ok", Consumer: "1"},
	} {
		require.NoError(t, r.Heartbeat(k, 0, t0))
	}
	for _, byQueue := range []bool{false, true} {
		out := scrape(t, presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }, ByQueue: byQueue}))
		if byQueue {
			assert.Contains(t, out, `presence_consumers{queue="q",state="active"} 4`)
			assert.Contains(t, out, `presence_consumers{queue="__other__",state="active"} 1`)
		} else {
			assert.Contains(t, out, "presence_consumers{group=\"\uFFFD\",queue=\"q\",state=\"active\"} 3")
			assert.Contains(t, out, `presence_consumers{group="__other__",queue="__other__",state="active"} 1`)
		}
	}
	// The same with a registry free of invalid names: the Other group alone.
	r2 := presence.New()
	require.NoError(t, r2.Heartbeat(presence.Key{Queue: presenceprom.Other, Group: presenceprom.Other, Consumer: "1"}, 0, t0))
	out := scrape(t, presenceprom.New(r2, presenceprom.Options{Now: func() time.Time { return t0 }}))
	assert.Contains(t, out, `presence_consumers{group="__other__",queue="__other__",state="active"} 1`)

	// A queue named like the Other set, larger than the kept ones, while
	// others are folded: one Other series holds them all.
	for _, q := range []string{"a", "b", presenceprom.Other, presenceprom.Other, presenceprom.Other} {
		require.NoError(t, r2.Heartbeat(presence.Key{Queue: q, Group: "g", Consumer: fmt.Sprint(r2.Len())}, 0, t0))
	}
	for _, byQueue := range []bool{false, true} {
		out = scrape(t, presenceprom.New(r2, presenceprom.Options{Now: func() time.Time { return t0 }, ByQueue: byQueue, MaxGroups: 1}))
		want := map[bool]string{
			false: `presence_consumers{group="__other__",queue="__other__",state="active"} 3`, // the real one, a and b
			true:  `presence_consumers{queue="__other__",state="active"} 5`,                   // queue __other__ (4) and b; a is kept
		}[byQueue]
		assert.Contains(t, out, want+"\n", out)
	}
}

// groupsRegistry has n groups of one consumer each, a queue per device, and
// one big group.
func groupsRegistry(tb testing.TB, n int) *presence.Registry {
	r := presence.New(presence.WithCounters())
	for i := range n {
		require.NoError(tb, r.Heartbeat(presence.Key{Queue: fmt.Sprintf("device-%07d", i), Group: "workers", Consumer: "c"}, 0, t0))
	}
	for i := range 50 {
		require.NoError(tb, r.Heartbeat(presence.Key{Queue: "zorders", Group: "workers", Consumer: fmt.Sprint(i)}, 0, t0))
	}
	return r
}

// With 100k groups a scrape stays at the cap: 3 series per exported group
// plus the Other set, and the big group is among those exported.
func TestScrape100kGroups(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	r := groupsRegistry(t, n)
	for _, opt := range []presenceprom.Options{{}, {ByQueue: true}} {
		opt.Now = func() time.Time { return t0 }
		c := presenceprom.New(r, opt)
		start := time.Now()
		series := testutil.CollectAndCount(c, "presence_consumers")
		took := time.Since(start)
		t.Logf("groups=%d ByQueue=%v: %d series in one scrape of presence_consumers, %v", n+1, opt.ByQueue, series, took)
		assert.Equal(t, 3*(presenceprom.DefaultMaxGroups+1), series)
		out := scrape(t, c)
		assert.Contains(t, out, `queue="zorders",state="active"} 50`, "the largest group is exported")
		assert.Contains(t, out, fmt.Sprintf("presence_groups %d\n", n+1))
	}
}

// BenchmarkCollect reports the series and the time of one scrape.
func BenchmarkCollect(b *testing.B) {
	r := groupsRegistry(b, 100_000)
	for _, max := range []int{presenceprom.DefaultMaxGroups, -1} {
		b.Run(fmt.Sprintf("groups=100001/max=%d", max), func(b *testing.B) {
			c := presenceprom.New(r, presenceprom.Options{Now: func() time.Time { return t0 }, MaxGroups: max})
			ch := make(chan prometheus.Metric, 1024)
			series := 0
			done := make(chan struct{})
			go func() {
				for range ch {
					series++
				}
				close(done)
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c.Collect(ch)
			}
			b.StopTimer()
			close(ch)
			<-done
			b.ReportMetric(float64(series)/float64(b.N), "metrics/op")
		})
	}
}
