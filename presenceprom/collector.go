// Package presenceprom exports a presence.Registry to Prometheus.
//
//	reg := presence.New(presence.WithCounters())
//	prometheus.MustRegister(presenceprom.New(reg, presenceprom.Options{}))
//
// At every scrape the collector reports, per (queue, group) and state, the
// number of consumers (computed then from Registry.CountByGroup, so there is
// nothing to keep up to date), and the registry's running totals from
// Registry.Counters, which a registry keeps on striped counters when created
// WithCounters.
package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed351623e9/presence"
)

// Options configure a Collector. The zero value is usable.
type Options struct {
	// Namespace prefixes every metric name; default "presence".
	Namespace string
	// TTL classifies consumers at scrape time; default presence.DefaultTTL.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Collector is a prometheus.Collector for one registry.
type Collector struct {
	reg       *presence.Registry
	opt       Options
	consumers *prometheus.Desc
	totals    []total
}

type total struct {
	desc *prometheus.Desc
	get  func(presence.Counters) int64
}

// New returns a Collector for r.
func New(r *presence.Registry, opt Options) *Collector {
	if opt.Namespace == "" {
		opt.Namespace = "presence"
	}
	if opt.TTL <= 0 {
		opt.TTL = presence.DefaultTTL
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	name := func(n string) string { return prometheus.BuildFQName(opt.Namespace, "", n) }
	c := &Collector{
		reg: r, opt: opt,
		consumers: prometheus.NewDesc(name("consumers"),
			"Consumers by queue, group and state (active, stale, expired) at scrape time.",
			[]string{"queue", "group", "state"}, nil),
	}
	add := func(n, help string, get func(presence.Counters) int64) {
		c.totals = append(c.totals, total{prometheus.NewDesc(name(n), help, nil, nil), get})
	}
	add("heartbeats_total", "Heartbeats recorded, by key or by handle.", func(t presence.Counters) int64 { return t.Heartbeats })
	add("registrations_total", "Consumers registered, including registrations after removal and restores.", func(t presence.Counters) int64 { return t.Registrations })
	add("pruned_total", "Consumers removed as expired.", func(t presence.Counters) int64 { return t.Expired })
	add("deregistrations_total", "Consumers removed by Deregister.", func(t presence.Counters) int64 { return t.Left })
	add("rejections_total", "Registrations refused by a consumer limit.", func(t presence.Counters) int64 { return t.Rejected })
	add("events_dropped_total", "Events dropped because a subscriber's buffer was full.", func(t presence.Counters) int64 { return t.EventsDropped })
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.consumers
	for _, t := range c.totals {
		ch <- t.desc
	}
}

// Collect implements prometheus.Collector. It walks the registry's group
// index once (Registry.CountByGroup): no snapshot, no sort.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for g, n := range c.reg.CountByGroup(c.opt.Now(), c.opt.TTL) {
		for _, s := range []struct {
			state string
			n     int
		}{{"active", n.Active}, {"stale", n.Stale}, {"expired", n.Expired}} {
			ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(s.n), g.Queue, g.Group, s.state)
		}
	}
	counts := c.reg.Counters()
	for _, t := range c.totals {
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.CounterValue, float64(t.get(counts)))
	}
}
