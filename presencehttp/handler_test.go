package presencehttp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T) (*presence.Registry, *httptest.Server) {
	t.Helper()
	r := presence.New()
	beat := func(q, g, c string, leases uint32, at time.Time) {
		require.NoError(t, r.Heartbeat(presence.Key{Queue: q, Group: g, Consumer: c}, leases, at))
	}
	beat("orders", "workers", "w1", 3, t0)
	beat("orders", "workers", "w2", 0, t0.Add(-45*time.Second))
	beat("orders", "audit", "a1", 0, t0.Add(-5*time.Minute))
	beat("billing", "workers", "b\x00odd", 1, t0)
	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(r, presencehttp.Options{
		Now: func() time.Time { return t0 },
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return r, srv
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func rows(t *testing.T, url string) []presencehttp.Row {
	t.Helper()
	code, h, b := get(t, url)
	require.Equal(t, http.StatusOK, code, string(b))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var out []presencehttp.Row
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return out
}

func names(rs []presencehttp.Row) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Consumer)
	}
	return out
}

func TestConsumers(t *testing.T) {
	_, srv := setup(t)
	all := rows(t, srv.URL+"/presence/consumers")
	assert.Equal(t, []string{"b\x00odd", "a1", "w1", "w2"}, names(all), "sorted by queue, group, consumer")

	w1 := all[2]
	assert.Equal(t, "orders", w1.Queue)
	assert.Equal(t, "workers", w1.Group)
	assert.Equal(t, "active", w1.State)
	assert.EqualValues(t, 3, w1.LeaseCount)
	assert.True(t, w1.LastHeartbeat.Equal(t0))
	require.NotNil(t, w1.LastActive)
	assert.Nil(t, all[3].LastActive, "never active: null")
	assert.EqualValues(t, 45000, all[3].LastSeenAgeMS)
	assert.Equal(t, "stale", all[3].State)

	assert.Equal(t, []string{"a1", "w1", "w2"}, names(rows(t, srv.URL+"/presence/consumers?queue=orders")))
	assert.Equal(t, []string{"w1", "w2"}, names(rows(t, srv.URL+"/presence/consumers?queue=orders&group=workers")))
	assert.Equal(t, []string{"w2"}, names(rows(t, srv.URL+"/presence/consumers?queue=orders&group=workers&state=stale")))
	assert.Equal(t, []string{"a1"}, names(rows(t, srv.URL+"/presence/consumers?state=expired")))
	assert.Equal(t, []string{"w1", "w2"}, names(rows(t, srv.URL+"/presence/consumers?queue=orders&state=active&ttl=1m")), "ttl changes the states")
	assert.Empty(t, rows(t, srv.URL+"/presence/consumers?queue=nothing"))

	// The raw JSON uses the documented names and RFC 3339 times.
	_, _, b := get(t, srv.URL+"/presence/consumers?queue=orders&group=workers&state=active")
	for _, field := range []string{`"queue":"orders"`, `"registered_at":"2026-11-29T12:00:00Z"`, `"last_seen_age_ms":0`, `"lease_count":3`, `"state":"active"`, `"last_active":"2026-11-29T12:00:00Z"`} {
		assert.Contains(t, string(b), field)
	}
}

func TestGroups(t *testing.T) {
	_, srv := setup(t)
	code, _, b := get(t, srv.URL+"/presence/groups")
	require.Equal(t, http.StatusOK, code)
	var gs []presencehttp.GroupRow
	require.NoError(t, json.Unmarshal(b, &gs))
	assert.Equal(t, []presencehttp.GroupRow{
		{Queue: "billing", Group: "workers", Active: 1},
		{Queue: "orders", Group: "audit", Expired: 1},
		{Queue: "orders", Group: "workers", Active: 1, Stale: 1},
	}, gs)
	_, _, b = get(t, srv.URL+"/presence/groups?queue=billing")
	require.NoError(t, json.Unmarshal(b, &gs))
	assert.Len(t, gs, 1)
}

func TestBadRequests(t *testing.T) {
	_, srv := setup(t)
	for path, code := range map[string]int{
		"/presence/consumers?ttl=soon":      http.StatusBadRequest,
		"/presence/consumers?ttl=-1s":       http.StatusBadRequest,
		"/presence/consumers?state=dead":    http.StatusBadRequest,
		"/presence/consumers?group=workers": http.StatusBadRequest,
		"/presence/groups?ttl=x":            http.StatusBadRequest,
		"/presence/groups?group=workers":    http.StatusBadRequest,
		"/presence/stats?ttl=x":             http.StatusBadRequest,
		"/presence/consumers?limit=0":       http.StatusBadRequest,
		"/presence/consumers?limit=ten":     http.StatusBadRequest,
		"/presence/groups?limit=-1":         http.StatusBadRequest,
		"/presence/groups?limit=1e3":        http.StatusBadRequest,
		"/presence/consumers?after=%21%21":  http.StatusBadRequest,
		"/presence/consumers?after=eA":      http.StatusBadRequest, // base64 of "x": no kind
		"/presence/groups?after=Yw":         http.StatusBadRequest, // "c" with no lengths
		"/presence/groups?after=ZwEA":       http.StatusBadRequest, // "g", queue length 1, byte 0, no group length
		"/presence/nothing-here":            http.StatusNotFound,
	} {
		got, h, b := get(t, srv.URL+path)
		assert.Equal(t, code, got, path)
		assert.Equal(t, "application/json", h.Get("Content-Type"), path)
		var e map[string]string
		require.NoError(t, json.Unmarshal(b, &e), path)
		assert.NotEmpty(t, e["error"], path)
	}
	resp, err := http.Post(srv.URL+"/presence/consumers", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}

func TestPage(t *testing.T) {
	_, srv := setup(t)
	code, h, b := get(t, srv.URL+"/presence/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, h.Get("Content-Type"), "text/html")
	assert.Contains(t, string(b), "<title>Consumer presence</title>")
	assert.NotContains(t, string(b), "http://", "no external assets")
	assert.NotContains(t, string(b), "https://", "no external assets")

	// Without the trailing slash, a redirect to it, so relative fetches work.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.URL + "/presence")
	require.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode == http.StatusMovedPermanently {
		assert.Equal(t, "/presence/", resp.Header.Get("Location"))
	}
}

// A large registry streams, a page at a time: walking the next links
// returns every row once, in order.
func TestLargeRegistryStreams(t *testing.T) {
	r := presence.New()
	for i := 0; i < 20000; i++ {
		require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: strings.Repeat("x", i%50) + string(rune('a'+i%26)) + time.Duration(i).String()}, 0, t0))
	}
	srv := httptest.NewServer(presencehttp.New(r, presencehttp.Options{Now: func() time.Time { return t0 }}))
	defer srv.Close()
	first := rows(t, srv.URL+"/consumers")
	assert.Len(t, first, 1000, "the default limit")
	all := walk[presencehttp.Row](t, srv.URL+"/", "consumers", func() {})
	assert.Len(t, all, r.Len())
}
