// Package presenceprom exports a presence.Registry to Prometheus.
//
//	reg := presence.New(presence.WithCounters())
//	prometheus.MustRegister(presenceprom.New(reg, presenceprom.Options{}))
//
// At every scrape the collector reports the number of consumers per
// (queue, group) and state, computed then from [presence.Registry.CountByGroup]
// so that there is nothing to keep up to date, and the registry's running
// totals from [presence.Registry.Counters], which a registry keeps on striped
// counters when created [presence.WithCounters].
//
// # Cardinality
//
// presence_consumers has one series per exported label set and state, so a
// broker with a queue per device could make millions. The collector keeps
// that bounded by default: it exports at most [Options.MaxGroups] label sets
// (1000 unless set), those of the largest groups, and sums every other
// group into one label set whose labels are all [Other] ("__other__").
// presence_groups says how many groups there are in all, so a dashboard can
// tell how many were folded. [Options.ByQueue] drops the group label and
// counts per queue instead, with the same cap on queues.
//
// # When not to use the cap
//
// The cap picks the largest groups at each scrape: when groups around the
// cut have the same size, the one with the smaller (queue, group) in byte
// order wins, so the exported set is stable while sizes are. Groups whose
// size changes around the cut move in and out of the export between scrapes.
// An alert on one named group must not depend on that: give it a cap above
// the number of groups (a negative MaxGroups turns the cap off), or watch it
// through presencehttp.
package presenceprom

import (
	"cmp"
	"container/heap"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed351623e9/presence"
)

// Other is the label value of the series that sums the groups (or queues)
// beyond [Options.MaxGroups]. A group whose own queue and group are both
// "__other__" is summed there as well, so that no two series share labels.
const Other = "__other__"

// DefaultMaxGroups is the number of label sets presence_consumers exports
// when [Options.MaxGroups] is 0.
const DefaultMaxGroups = 1000

// Options configure a Collector. The zero value is usable.
type Options struct {
	// Namespace prefixes every metric name; default "presence".
	Namespace string
	// TTL classifies at scrape time the consumers that declared no TTL of
	// their own (presence.Registry.HeartbeatWithTTL); the others are
	// classified by theirs. Default presence.DefaultTTL.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ByQueue exports presence_consumers{queue,state}, summing the groups
	// of each queue, instead of presence_consumers{queue,group,state}.
	ByQueue bool
	// MaxGroups caps the label sets of presence_consumers: (queue, group)
	// pairs, or queues with ByQueue. The largest are exported and the rest
	// summed into the label set [Other]. 0 means [DefaultMaxGroups]; a
	// negative value exports every group.
	MaxGroups int
}

// Collector is a prometheus.Collector for one registry.
type Collector struct {
	reg       *presence.Registry
	opt       Options
	consumers *prometheus.Desc
	groups    *prometheus.Desc
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
	if opt.MaxGroups == 0 {
		opt.MaxGroups = DefaultMaxGroups
	}
	name := func(n string) string { return prometheus.BuildFQName(opt.Namespace, "", n) }
	c := &Collector{reg: r, opt: opt}
	if opt.ByQueue {
		c.consumers = prometheus.NewDesc(name("consumers"),
			"Consumers by queue and state (active, stale, expired) at scrape time; queue=\"__other__\" sums the queues beyond the cap.",
			[]string{"queue", "state"}, nil)
	} else {
		c.consumers = prometheus.NewDesc(name("consumers"),
			"Consumers by queue, group and state (active, stale, expired) at scrape time; queue=group=\"__other__\" sums the groups beyond the cap.",
			[]string{"queue", "group", "state"}, nil)
	}
	c.groups = prometheus.NewDesc(name("groups"),
		"Consumer groups (queue, group) with at least one consumer at scrape time, exported or not.", nil, nil)
	add := func(n, help string, get func(presence.Counters) int64) {
		c.totals = append(c.totals, total{prometheus.NewDesc(name(n), help, nil, nil), get})
	}
	add("heartbeats_total", "Heartbeats recorded, by key or by handle.", func(t presence.Counters) int64 { return t.Heartbeats })
	add("registrations_total", "Consumers registered, including registrations after removal and restores.", func(t presence.Counters) int64 { return t.Registrations })
	add("pruned_total", "Consumers removed as expired.", func(t presence.Counters) int64 { return t.Expired })
	add("deregistrations_total", "Consumers removed by Deregister.", func(t presence.Counters) int64 { return t.Left })
	add("rejections_total", "Registrations refused by a consumer limit.", func(t presence.Counters) int64 { return t.Rejected })
	add("events_dropped_total", "Events dropped because a subscriber's buffer was full.", func(t presence.Counters) int64 { return t.EventsDropped })
	add("clock_steps_total", "Times taken as clock errors: stored heartbeats replaced by one more than the maximum clock step older, consumers pruned for a heartbeat that far ahead, future rows refused.", func(t presence.Counters) int64 { return t.ClockSteps })
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.consumers
	ch <- c.groups
	for _, t := range c.totals {
		ch <- t.desc
	}
}

// Collect implements prometheus.Collector. It walks the registry's group
// index once (Registry.CountByGroup): no snapshot, no sort. Picking the
// exported groups costs O(g · log MaxGroups) for g groups.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counts := c.reg.CountByGroup(c.opt.Now(), c.opt.TTL)
	sets := c.labelSets(counts)
	// A real group named like the Other label set is summed there.
	other, folded := sets[otherKey], sets[otherKey].Total() > 0
	if c.opt.MaxGroups >= 0 && len(sets) > c.opt.MaxGroups {
		keep := largest(sets, c.opt.MaxGroups)
		for k, n := range sets {
			if k == otherKey {
				continue
			}
			if _, ok := keep[k]; ok {
				c.emit(ch, k, n)
			} else {
				other = add(other, n)
				folded = true
			}
		}
	} else {
		for k, n := range sets {
			if k != otherKey {
				c.emit(ch, k, n)
			}
		}
	}
	if folded {
		c.emit(ch, otherKey, other)
	}
	ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(len(counts)))
	t := c.reg.Counters()
	for _, tot := range c.totals {
		ch <- prometheus.MustNewConstMetric(tot.desc, prometheus.CounterValue, float64(tot.get(t)))
	}
}

var otherKey = presence.GroupKey{Queue: Other, Group: Other}

// labelSets returns the counts per label set: counts itself when every
// name is a valid label value and groups are exported as they are, else a
// new map keyed by the label values, with groups summed per queue (ByQueue)
// and names made valid UTF-8 (invalid bytes become U+FFFD; names that then
// coincide are summed). With ByQueue a key's Group is "" except for
// otherKey, which holds a queue named Other.
func (c *Collector) labelSets(counts map[presence.GroupKey]presence.Counts) map[presence.GroupKey]presence.Counts {
	if !c.opt.ByQueue {
		valid := true
		for g := range counts {
			if !utf8.ValidString(g.Queue) || !utf8.ValidString(g.Group) {
				valid = false
				break
			}
		}
		if valid {
			return counts
		}
	}
	out := make(map[presence.GroupKey]presence.Counts)
	for g, n := range counts {
		k := presence.GroupKey{Queue: strings.ToValidUTF8(g.Queue, "\uFFFD")}
		if !c.opt.ByQueue {
			k.Group = strings.ToValidUTF8(g.Group, "\uFFFD")
		}
		if k.Queue == Other && (c.opt.ByQueue || k.Group == Other) {
			k = otherKey
		}
		out[k] = add(out[k], n)
	}
	return out
}

func (c *Collector) emit(ch chan<- prometheus.Metric, k presence.GroupKey, n presence.Counts) {
	labels := []string{k.Queue, k.Group}
	if c.opt.ByQueue {
		labels = labels[:1]
	}
	for _, s := range [...]struct {
		state string
		n     int
	}{{"active", n.Active}, {"stale", n.Stale}, {"expired", n.Expired}} {
		ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(s.n), append(labels, s.state)...)
	}
}

func add(a, b presence.Counts) presence.Counts {
	return presence.Counts{Active: a.Active + b.Active, Stale: a.Stale + b.Stale, Expired: a.Expired + b.Expired}
}

// largest returns the k label sets of sets with the most consumers, ties
// going to the smaller (queue, group) in byte order, skipping otherKey. It
// keeps a heap of k, whose root is the weakest kept.
func largest(sets map[presence.GroupKey]presence.Counts, k int) map[presence.GroupKey]struct{} {
	h := &weakest{}
	for g, n := range sets {
		if g == otherKey || k == 0 {
			continue
		}
		s := sized{g, n.Total()}
		if h.Len() < k {
			heap.Push(h, s)
		} else if stronger(s, (*h)[0]) {
			(*h)[0] = s
			heap.Fix(h, 0)
		}
	}
	keep := make(map[presence.GroupKey]struct{}, h.Len())
	for _, s := range *h {
		keep[s.g] = struct{}{}
	}
	return keep
}

type sized struct {
	g presence.GroupKey
	n int
}

func stronger(a, b sized) bool {
	if a.n != b.n {
		return a.n > b.n
	}
	return cmp.Or(cmp.Compare(a.g.Queue, b.g.Queue), cmp.Compare(a.g.Group, b.g.Group)) < 0
}

// weakest is a container/heap whose root is the weakest label set.
type weakest []sized

func (h weakest) Len() int           { return len(h) }
func (h weakest) Less(i, j int) bool { return stronger(h[j], h[i]) }
func (h weakest) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *weakest) Push(x any)        { *h = append(*h, x.(sized)) }
func (h *weakest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
