package presencehttp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

// A real-time consumer (1 s TTL) and a batch one (5 min) next to one that
// declares nothing: the API judges each by its own budget, says which in
// the ttl columns, and the ttl parameter moves only the one without.
func TestDeclaredTTLs(t *testing.T) {
	r := presence.New()
	require.NoError(t, r.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: "realtime", Consumer: "rt"}, 1, time.Second, t0))
	require.NoError(t, r.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: "batch", Consumer: "nightly"}, 1, 5*time.Minute, t0))
	require.NoError(t, r.Heartbeat(presence.Key{Queue: "orders", Group: "legacy", Consumer: "old"}, 1, t0))
	var now atomic.Int64
	now.Store(t0.UnixNano())
	srv := httptest.NewServer(presencehttp.New(r, presencehttp.Options{Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }}))
	t.Cleanup(srv.Close)

	byName := func(query string) map[string]presencehttp.Row {
		out := map[string]presencehttp.Row{}
		for _, row := range rows(t, srv.URL+"/consumers"+query) {
			out[row.Consumer] = row
		}
		return out
	}
	type row struct {
		state, ttl string
		ms         int64
		declared   bool
	}
	pick := func(r presencehttp.Row) row { return row{r.State, r.TTL, r.TTLMS, r.TTLDeclared} }

	now.Store(t0.Add(1500 * time.Millisecond).UnixNano())
	got := byName("")
	assert.Equal(t, row{"stale", "1s", 1000, true}, pick(got["rt"]))
	assert.Equal(t, row{"active", "5m0s", 300000, true}, pick(got["nightly"]))
	assert.Equal(t, row{"active", "30s", 30000, false}, pick(got["old"]))

	// ttl is the default for the consumer without its own, and only for it.
	got = byName("?ttl=1ms")
	assert.Equal(t, row{"stale", "1s", 1000, true}, pick(got["rt"]))
	assert.Equal(t, row{"active", "5m0s", 300000, true}, pick(got["nightly"]))
	assert.Equal(t, row{"expired", "1ms", 1, false}, pick(got["old"]))
	assert.Len(t, rows(t, srv.URL+"/consumers?state=expired&ttl=1ms"), 1)

	now.Store(t0.Add(6 * time.Minute).UnixNano())
	got = byName("?ttl=1h")
	assert.Equal(t, "expired", got["rt"].State)
	assert.Equal(t, "stale", got["nightly"].State)
	assert.Equal(t, "active", got["old"].State)

	// The counts agree with the rows.
	code, _, b := get(t, srv.URL+"/groups?ttl=1h")
	require.Equal(t, http.StatusOK, code)
	var groups []presencehttp.GroupRow
	require.NoError(t, json.Unmarshal(b, &groups))
	assert.Equal(t, []presencehttp.GroupRow{
		{Queue: "orders", Group: "batch", Stale: 1},
		{Queue: "orders", Group: "legacy", Active: 1},
		{Queue: "orders", Group: "realtime", Expired: 1},
	}, groups)
	code, _, b = get(t, srv.URL+"/stats?ttl=1h")
	require.Equal(t, http.StatusOK, code)
	var st presencehttp.Stats
	require.NoError(t, json.Unmarshal(b, &st))
	assert.Equal(t, presencehttp.Stats{TTL: "1h0m0s", TTLMS: 3600000, Active: 1, Stale: 1, Expired: 1}, st)
}
