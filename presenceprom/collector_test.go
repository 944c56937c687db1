package presenceprom_test

import (
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
# HELP presence_consumers Consumers by queue, group and state (active, stale, expired) at scrape time.
# TYPE presence_consumers gauge
presence_consumers{group="audit",queue="orders",state="active"} 0
presence_consumers{group="audit",queue="orders",state="expired"} 1
presence_consumers{group="audit",queue="orders",state="stale"} 0
presence_consumers{group="workers",queue="orders",state="active"} 1
presence_consumers{group="workers",queue="orders",state="expired"} 0
presence_consumers{group="workers",queue="orders",state="stale"} 1
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
		"presence_consumers", "presence_heartbeats_total", "presence_registrations_total", "presence_rejections_total"))

	// After a prune the expired group disappears from the gauge.
	assert.Equal(t, 1, r.PruneExpired(t0, presence.DefaultTTL))
	assert.Equal(t, 3, testutil.CollectAndCount(c, "presence_consumers"))
	assert.Equal(t, 1.0, testutil.ToFloat64(counter(t, c, "presence_pruned_total")))
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
