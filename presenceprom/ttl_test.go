package presenceprom_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceprom"
)

// The gauge classifies each consumer by its own declared TTL: 90 s after
// their last beats, a real-time consumer (1 s) is expired and a batch one
// (5 min) active, while the one without its own is stale under the
// collector's 1 min.
func TestDeclaredTTLs(t *testing.T) {
	r := presence.New()
	k := func(g, c string) presence.Key { return presence.Key{Queue: "orders", Group: g, Consumer: c} }
	require.NoError(t, r.HeartbeatWithTTL(k("realtime", "rt"), 0, time.Second, t0))
	require.NoError(t, r.HeartbeatWithTTL(k("batch", "nightly"), 0, 5*time.Minute, t0))
	require.NoError(t, r.Heartbeat(k("legacy", "old"), 0, t0))
	c := presenceprom.New(r, presenceprom.Options{TTL: time.Minute, Now: func() time.Time { return t0.Add(90 * time.Second) }})
	want := `
# HELP presence_consumers Consumers by queue, group and state (active, stale, expired) at scrape time; queue=group="__other__" sums the groups beyond the cap.
# TYPE presence_consumers gauge
presence_consumers{group="batch",queue="orders",state="active"} 1
presence_consumers{group="batch",queue="orders",state="expired"} 0
presence_consumers{group="batch",queue="orders",state="stale"} 0
presence_consumers{group="legacy",queue="orders",state="active"} 0
presence_consumers{group="legacy",queue="orders",state="expired"} 0
presence_consumers{group="legacy",queue="orders",state="stale"} 1
presence_consumers{group="realtime",queue="orders",state="active"} 0
presence_consumers{group="realtime",queue="orders",state="expired"} 1
presence_consumers{group="realtime",queue="orders",state="stale"} 0
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "presence_consumers"))
}
