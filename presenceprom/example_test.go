package presenceprom_test

import (
	"net/http"

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
