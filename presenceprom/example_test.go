package presenceprom_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceprom"
)

// Register the collector and serve /metrics. (No Output: it serves HTTP.)
func Example() {
	reg := presence.New(presence.WithCounters()) // counters are opt-in
	prom := prometheus.NewRegistry()
	prom.MustRegister(presenceprom.New(reg, presenceprom.Options{}))
	http.Handle("/metrics", promhttp.HandlerFor(prom, promhttp.HandlerOpts{}))
}

// A broker with a queue per device: count per queue, export the two
// largest queues, and sum the rest into queue="__other__".
func ExampleOptions() {
	reg := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, q := range []string{"orders", "orders", "orders", "billing", "billing", "device-1", "device-2", "device-3"} {
		_ = reg.Heartbeat(presence.Key{Queue: q, Group: "workers", Consumer: fmt.Sprint("c", i)}, 0, now)
	}
	prom := prometheus.NewRegistry()
	prom.MustRegister(presenceprom.New(reg, presenceprom.Options{
		Now:       func() time.Time { return now },
		ByQueue:   true,
		MaxGroups: 2,
	}))
	mfs, _ := prom.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 2 && l[1].GetValue() == "active" {
				fmt.Printf("%s{queue=%q} %v\n", mf.GetName(), l[0].GetValue(), m.GetGauge().GetValue())
			} else if len(l) == 0 && mf.GetName() == "presence_groups" {
				fmt.Printf("%s %v\n", mf.GetName(), m.GetGauge().GetValue())
			}
		}
	}
	// Output:
	// presence_consumers{queue="__other__"} 3
	// presence_consumers{queue="billing"} 2
	// presence_consumers{queue="orders"} 3
	// presence_groups 5
}
