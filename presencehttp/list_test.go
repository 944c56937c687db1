package presencehttp_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

var nextLink = regexp.MustCompile(`^<([^>]*)>; rel="next"$`)

// walk follows the next links from base+first to the end, calling between
// after each page, and returns every row of every page in order.
func walk[T any](t *testing.T, base, first string, between func()) []T {
	t.Helper()
	u, err := url.Parse(base + first)
	require.NoError(t, err)
	var all []T
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "the walk does not end")
		code, h, b := get(t, u.String())
		require.Equal(t, http.StatusOK, code, string(b))
		var page []T
		require.NoError(t, json.Unmarshal(b, &page), string(b))
		all = append(all, page...)
		link := h.Get("Link")
		if link == "" {
			return all
		}
		m := nextLink.FindStringSubmatch(link)
		require.NotNil(t, m, "Link: %s", link)
		require.NotEmpty(t, page, "a next link after an empty page")
		ref, err := url.Parse(m[1])
		require.NoError(t, err)
		require.Empty(t, ref.Host, "the next link names no host")
		u = u.ResolveReference(ref)
		between()
	}
}

func TestPagingLimitAndNext(t *testing.T) {
	_, srv := setup(t)
	base := srv.URL + "/presence/"
	code, h, b := get(t, base+"consumers?limit=2")
	require.Equal(t, http.StatusOK, code)
	var page []presencehttp.Row
	require.NoError(t, json.Unmarshal(b, &page))
	assert.Equal(t, []string{"b\x00odd", "a1"}, names(page))
	m := nextLink.FindStringSubmatch(h.Get("Link"))
	require.NotNil(t, m, h.Get("Link"))
	assert.True(t, strings.HasPrefix(m[1], "consumers?"), m[1])
	assert.Contains(t, m[1], "limit=2")

	// The last page has no next link; an exact fit neither.
	_, h, _ = get(t, base+"consumers?limit=4")
	assert.Empty(t, h.Get("Link"))
	assert.Equal(t, names(rows(t, base+"consumers")), names(walk[presencehttp.Row](t, base, "consumers?limit=1", func() {})))

	// Filters carry into the next link.
	assert.Equal(t, []string{"w1", "w2"}, names(walk[presencehttp.Row](t, base, "consumers?queue=orders&group=workers&limit=1", func() {})))
	assert.Equal(t, []string{"w1", "w2"}, names(walk[presencehttp.Row](t, base, "consumers?search=W&limit=1", func() {})), "search ignores case")
	gs := walk[presencehttp.GroupRow](t, base, "groups?limit=1", func() {})
	assert.Len(t, gs, 3)
	gs = walk[presencehttp.GroupRow](t, base, "groups?queue=orders&limit=1", func() {})
	assert.Equal(t, []presencehttp.GroupRow{{Queue: "orders", Group: "audit", Expired: 1}, {Queue: "orders", Group: "workers", Active: 1, Stale: 1}}, gs)

	// A consumers cursor works on /groups: it starts at that consumer's group.
	_, h, _ = get(t, base+"consumers?limit=3") // ends at orders/workers/w1
	m = nextLink.FindStringSubmatch(h.Get("Link"))
	require.NotNil(t, m)
	after, err := url.ParseQuery(strings.SplitN(m[1], "?", 2)[1])
	require.NoError(t, err)
	_, _, b = get(t, base+"groups?after="+after.Get("after"))
	require.NoError(t, json.Unmarshal(b, &gs))
	assert.Equal(t, []presencehttp.GroupRow{{Queue: "orders", Group: "workers", Active: 1, Stale: 1}}, gs)
}

// A walk over a registry that changes between pages lists no row twice,
// keeps the sort order, and skips no consumer that stayed registered, for
// every filter and each view behind it.
func TestPagingWalkWhileChanging(t *testing.T) {
	r := presence.New()
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(q, g, c int) presence.Key {
		return presence.Key{Queue: fmt.Sprintf("q%d", q), Group: fmt.Sprintf("g%02d", g), Consumer: fmt.Sprintf("C%04d", c)}
	}
	srv := httptest.NewServer(presencehttp.New(r, presencehttp.Options{Now: func() time.Time { return t0 }}))
	defer srv.Close()

	for _, tc := range []struct {
		query string
		keep  func(presence.Key) bool
	}{
		{"", func(presence.Key) bool { return true }},
		{"queue=q1", func(k presence.Key) bool { return k.Queue == "q1" }},
		{"queue=q1&group=g03", func(k presence.Key) bool { return k.Queue == "q1" && k.Group == "g03" }},
		{"state=active", func(k presence.Key) bool { return k.Consumer[len(k.Consumer)-1] != '7' }},
		{"search=c01", func(k presence.Key) bool { return strings.Contains(k.Consumer, "C01") }},
	} {
		t.Run("query="+tc.query, func(t *testing.T) {
			for _, c := range r.Snapshot(t0, time.Minute) {
				r.Deregister(c.Key)
			}
			n := 0
			present := map[presence.Key]bool{} // true: registered since the walk began and never removed
			add := func(k presence.Key, stays bool) {
				at := t0
				if k.Consumer[len(k.Consumer)-1] == '7' {
					at = t0.Add(-45 * time.Second) // stale
				}
				require.NoError(t, r.Heartbeat(k, 0, at))
				if _, ok := present[k]; !ok {
					present[k] = stays
				}
			}
			for q := range 3 {
				for g := range 8 {
					for range 25 {
						n++
						add(key(q, g, n), true)
					}
				}
			}
			between := func() {
				var keys []presence.Key
				for k, stays := range present {
					if stays {
						keys = append(keys, k)
					}
				}
				for range 7 {
					k := keys[rng.IntN(len(keys))]
					r.Deregister(k)
					present[k] = false
				}
				for range 7 {
					n++
					add(key(rng.IntN(3), rng.IntN(9), n), false)
				}
			}
			got := walk[presencehttp.Row](t, srv.URL+"/", "consumers?limit=13&"+tc.query, between)
			seen := map[presence.Key]bool{}
			for i, row := range got {
				k := presence.Key{Queue: row.Queue, Group: row.Group, Consumer: row.Consumer}
				require.False(t, seen[k], "row %v twice", k)
				seen[k] = true
				require.True(t, tc.keep(k), "row %v does not match", k)
				if i > 0 {
					prev := got[i-1]
					require.Negative(t, presence.CompareKeys(presence.Key{Queue: prev.Queue, Group: prev.Group, Consumer: prev.Consumer}, k), "out of order")
				}
			}
			stayed := 0
			for k, stays := range present {
				if stays && tc.keep(k) {
					stayed++
					assert.True(t, seen[k], "skipped %v, registered all along", k)
				}
			}
			require.Positive(t, stayed)
		})
	}

	// Groups: each group that kept a consumer all along is listed once.
	for _, c := range r.Snapshot(t0, time.Minute) {
		r.Deregister(c.Key)
	}
	for q := range 3 {
		for g := range 30 {
			require.NoError(t, r.Heartbeat(key(q, g, 0), 0, t0))
		}
	}
	n := 1
	gs := walk[presencehttp.GroupRow](t, srv.URL+"/", "groups?limit=7", func() {
		for range 3 { // new groups, some before the cursor, some after
			n++
			require.NoError(t, r.Heartbeat(key(rng.IntN(3), 30+rng.IntN(60), n), 0, t0))
		}
	})
	seen := map[presence.GroupKey]bool{}
	for _, g := range gs {
		k := presence.GroupKey{Queue: g.Queue, Group: g.Group}
		require.False(t, seen[k], "group %v twice", k)
		seen[k] = true
	}
	for q := range 3 {
		for g := range 30 {
			k := key(q, g, 0)
			assert.True(t, seen[presence.GroupKey{Queue: k.Queue, Group: k.Group}], "skipped %v", k)
		}
	}
}

// A limit above MaxLimit, however large, gets MaxLimit rows and a next
// link; so does a default Limit set above it.
func TestLimitAboveMax(t *testing.T) {
	r := presence.New()
	for _, c := range []string{"a", "b", "c"} {
		require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: "g", Consumer: c}, 0, t0))
	}
	srv := httptest.NewServer(presencehttp.New(r, presencehttp.Options{MaxLimit: 2, Limit: 5, Now: func() time.Time { return t0 }}))
	defer srv.Close()
	for _, q := range []string{"", "?limit=3", "?limit=99999999999999999999"} {
		code, h, b := get(t, srv.URL+"/consumers"+q)
		require.Equal(t, http.StatusOK, code, q)
		var page []presencehttp.Row
		require.NoError(t, json.Unmarshal(b, &page))
		assert.Equal(t, []string{"a", "b"}, names(page), q)
		assert.NotEmpty(t, h.Get("Link"), q)
	}
}

func TestStats(t *testing.T) {
	_, srv := setup(t)
	code, h, b := get(t, srv.URL+"/presence/stats")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var st presencehttp.Stats
	require.NoError(t, json.Unmarshal(b, &st))
	assert.Equal(t, presencehttp.Stats{TTL: "30s", TTLMS: 30000, Active: 2, Stale: 1, Expired: 1}, st)
	_, _, b = get(t, srv.URL+"/presence/stats?ttl=1m")
	require.NoError(t, json.Unmarshal(b, &st))
	assert.Equal(t, presencehttp.Stats{TTL: "1m0s", TTLMS: 60000, Active: 3, Stale: 0, Expired: 1}, st)
}

// Every response says nosniff; every JSON body, errors included, says
// no-store.
func TestSecurityHeaders(t *testing.T) {
	_, srv := setup(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/presence/", 200},
		{"HEAD", "/presence/", 200},
		{"GET", "/presence/consumers", 200},
		{"GET", "/presence/groups", 200},
		{"GET", "/presence/stats", 200},
		{"GET", "/presence/consumers?limit=0", 400},
		{"GET", "/presence/nothing", 404},
		{"POST", "/presence/consumers", 405},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		what := tc.method + " " + tc.path
		assert.Equal(t, tc.code, resp.StatusCode, what)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), what)
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), what)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'", what)
	}
}

// The page's CSP forbids framing and inline code other than the page's own
// script and style, whose hashes it names.
func TestPageCSP(t *testing.T) {
	_, srv := setup(t)
	_, h, b := get(t, srv.URL+"/presence/")
	csp := h.Get("Content-Security-Policy")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.Contains(t, csp, "default-src 'none'")
	assert.NotContains(t, csp, "unsafe-inline")
	assert.NotContains(t, csp, "unsafe-eval")
	hash := func(open, close string) string {
		_, rest, ok := strings.Cut(string(b), open)
		require.True(t, ok, open)
		body, _, ok := strings.Cut(rest, close)
		require.True(t, ok, close)
		sum := sha256.Sum256([]byte(body))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	assert.Contains(t, csp, "script-src "+hash("<script>", "</script>"))
	assert.Contains(t, csp, "style-src "+hash("<style>", "</style>"))
	assert.Equal(t, 1, strings.Count(string(b), "<script"), "one script, the hashed one")
	assert.NotContains(t, string(b), " style=", "no style attributes: the CSP would block them")
	assert.NotRegexp(t, ` on[a-z]+=`, string(b), "no inline handlers: the CSP would block them")
}

// The redirect that adds the trailing slash is relative: an absolute-form
// request's host never reaches the Location.
func TestRedirectIgnoresAbsoluteFormHost(t *testing.T) {
	r := presence.New()
	srv := httptest.NewServer(http.StripPrefix("/presence", presencehttp.New(r, presencehttp.Options{})))
	defer srv.Close()
	for _, target := range []string{"http://evil.example/presence?x=1", "/presence?x=1", "https://evil.example:8443/presence?x=1"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", target)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		conn.Close()
		assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode, target)
		loc := resp.Header.Get("Location")
		assert.Equal(t, "./presence/?x=1", loc, target)
		assert.NotContains(t, loc, "evil", target)
		// Resolved against the request, it is the same path with a slash.
		base, _ := url.Parse("http://127.0.0.1/presence?x=1")
		ref, _ := url.Parse(loc)
		assert.Equal(t, "http://127.0.0.1/presence/?x=1", base.ResolveReference(ref).String())
	}

	// Mounted at the root, an absolute-form request with no path gets the
	// page, not a redirect.
	root := httptest.NewServer(presencehttp.New(r, presencehttp.Options{}))
	defer root.Close()
	conn, err := net.Dial("tcp", root.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET http://evil.example HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Location"))
}

// A page of an unfiltered list costs memory for the page, not for the
// registry: the registry is streamed, never copied.
func TestPageMemoryIsBoundedByLimit(t *testing.T) {
	r := presence.New()
	n := 50_000
	if testing.Short() {
		n = 10_000
	}
	for i := range n {
		require.NoError(t, r.Heartbeat(presence.Key{Queue: "q", Group: fmt.Sprint(i % 100), Consumer: fmt.Sprint(i)}, 0, t0))
	}
	h := presencehttp.New(r, presencehttp.Options{Now: func() time.Time { return t0 }})
	for _, path := range []string{"/consumers?limit=100", "/consumers?limit=100&state=active&search=9"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		h.ServeHTTP(httptest.NewRecorder(), req) // warm up
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		runtime.ReadMemStats(&after)
		require.Equal(t, http.StatusOK, w.Code)
		perConsumer := float64(after.TotalAlloc-before.TotalAlloc) / float64(n)
		t.Logf("%s over %d consumers: %d bytes allocated (%.1f per consumer)", path, n, after.TotalAlloc-before.TotalAlloc, perConsumer)
		assert.Less(t, perConsumer, 16.0, "a copy of the registry costs over 100 bytes per consumer")
	}
}
