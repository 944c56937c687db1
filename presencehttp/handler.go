// Package presencehttp serves a presence.Registry over HTTP: a JSON API and
// a self-contained live page for operators. It uses only the standard
// library.
//
// Mount it under any prefix with http.StripPrefix:
//
//	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{})))
//
// Routes, relative to the mount point:
//
//	GET /                                                      the live page
//	GET /consumers?queue=&group=&state=&search=&ttl=&limit=&after=  JSON array of consumers
//	GET /groups?queue=&group=&ttl=&limit=&after=               JSON array of counts per group
//	GET /stats?ttl=                                            JSON object: the TTL in use and the registry's totals
//
// ttl is a Go duration ("30s"); it defaults to [Options.TTL]. It judges the
// consumers that declared no TTL of their own
// ([presence.Registry.HeartbeatWithTTL]); the others are judged by theirs,
// and each consumer row says which (ttl, ttl_ms, ttl_declared). group requires
// queue. state is "active", "stale" or "expired". search keeps the consumers
// whose name contains it, ignoring case.
//
// Lists come in pages, in the order of [presence.CompareKeys]: at most limit
// rows ([Options.Limit] by default; a larger limit than [Options.MaxLimit]
// gets MaxLimit). When more
// rows follow, the response carries a Link header with rel="next" whose
// relative URL asks for the next page; its after parameter is an opaque
// cursor naming a position in that order, not a row, so a page walk never
// repeats a row and never skips one that stayed registered while the walk
// ran. A cursor from /consumers works on /groups too: it then starts at the
// group of the consumer it names.
//
// Every 400 is a JSON {"error": "..."}: a ttl that is not a non-negative
// duration, a state other than the three, group without queue, a limit that
// is not a whole number of at least 1, and an after that is not a cursor
// from this API. An
// unknown path gets 404, a method other than GET or HEAD 405.
//
// Every response carries X-Content-Type-Options: nosniff, and every JSON
// body, error or not, Cache-Control: no-store and a Content-Security-Policy
// that loads nothing and forbids framing. The page carries a
// Content-Security-Policy that allows only its own hashed inline script and
// style and requests to its own origin, and forbids framing
// (frame-ancestors 'none').
package presencehttp

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/seed351623e9/presence"
)

//go:embed page.html
var page []byte

// Options configure the handler. The zero value is usable.
type Options struct {
	// TTL is the heartbeat budget used when a request gives none;
	// default presence.DefaultTTL.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives failures to write a response, such as a client
	// that went away mid-stream; default: nothing is logged.
	Logger *slog.Logger
	// Limit is the page size of /consumers and /groups when a request
	// gives none; default 1000, and never above MaxLimit.
	Limit int
	// MaxLimit is the largest page; default 10000. A request that asks
	// for more gets MaxLimit rows, and a next link if more follow.
	MaxLimit int
}

type handler struct {
	reg *presence.Registry
	opt Options
	csp string
}

// New returns the handler for r.
func New(r *presence.Registry, opt Options) http.Handler {
	if opt.TTL <= 0 {
		opt.TTL = presence.DefaultTTL
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.MaxLimit <= 0 {
		opt.MaxLimit = 10000
	}
	if opt.Limit <= 0 {
		opt.Limit = 1000
	}
	opt.Limit = min(opt.Limit, opt.MaxLimit)
	return &handler{reg: r, opt: opt, csp: pageCSP(page)}
}

// Row is the JSON form of one consumer.
type Row struct {
	Queue         string     `json:"queue"`
	Group         string     `json:"group"`
	Consumer      string     `json:"consumer"`
	RegisteredAt  time.Time  `json:"registered_at"`
	LastHeartbeat time.Time  `json:"last_heartbeat"`
	LastActive    *time.Time `json:"last_active"` // null if never active
	LastSeenAgeMS int64      `json:"last_seen_age_ms"`
	LeaseCount    uint32     `json:"lease_count"`
	State         string     `json:"state"`
	// TTL and TTLMS are the heartbeat budget State was judged by:
	// the consumer's own if it declared one (TTLDeclared), else the
	// request's ttl.
	TTL         string `json:"ttl"`
	TTLMS       int64  `json:"ttl_ms"`
	TTLDeclared bool   `json:"ttl_declared"`
}

// GroupRow is the JSON form of one group's counts.
type GroupRow struct {
	Queue   string `json:"queue"`
	Group   string `json:"group"`
	Active  int    `json:"active"`
	Stale   int    `json:"stale"`
	Expired int    `json:"expired"`
}

// Stats is the JSON form of /stats: the TTL that classified the counts, and
// the registry's consumers by state.
type Stats struct {
	TTL     string `json:"ttl"`
	TTLMS   int64  `json:"ttl_ms"`
	Active  int    `json:"active"`
	Stale   int    `json:"stale"`
	Expired int    `json:"expired"`
}

// toRow is the JSON form of c, read with TTL ttl.
func toRow(c presence.Consumer, ttl time.Duration) Row {
	r := Row{
		Queue: c.Queue, Group: c.Group, Consumer: c.Consumer,
		RegisteredAt: c.RegisteredAt, LastHeartbeat: c.LastHeartbeat,
		LastSeenAgeMS: c.Age.Milliseconds(), LeaseCount: c.Leases, State: c.State.String(),
		TTLDeclared: c.TTL != 0,
	}
	if r.TTLDeclared {
		ttl = c.TTL
	}
	r.TTL, r.TTLMS = ttl.String(), ttl.Milliseconds()
	if !c.LastActive.IsZero() {
		t := c.LastActive
		r.LastActive = &t
	}
	return r
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// JSON and errors are never a document: nothing loads, nothing frames.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/") {
	case "":
		if r.URL.Path == "" { // mounted at "/x" and asked for "/x": relative links need "/x/"
			if loc := slashRedirect(r); loc != "" {
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusMovedPermanently)
				return
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", h.csp)
		w.Header().Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
		w.Header().Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(page)
	case "consumers":
		h.consumers(w, r)
	case "groups":
		h.groups(w, r)
	case "stats":
		h.stats(w, r)
	default:
		h.fail(w, http.StatusNotFound, "no such resource %q", r.URL.Path)
	}
}

// slashRedirect returns the Location that adds the missing trailing slash
// to the request's path: "./last-segment/" and the query, relative, so that
// it resolves against whatever prefix the handler is mounted under. Only
// the path of the request URI is used: the host of an absolute-form request
// ("GET http://elsewhere/x") never reaches the Location. It returns "" when
// the request URI has no last segment to repeat.
func slashRedirect(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return ""
	}
	p := u.EscapedPath()
	last := p[strings.LastIndexByte(p, '/')+1:]
	if last == "" || last == "." || last == ".." {
		return ""
	}
	loc := "./" + last + "/"
	if u.RawQuery != "" {
		loc += "?" + u.RawQuery
	}
	return loc
}

func (h *handler) fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (h *handler) ttl(q url.Values) (time.Duration, error) {
	s := q.Get("ttl")
	if s == "" {
		return h.opt.TTL, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("ttl: %q is not a non-negative duration such as 30s", s)
	}
	return d, nil
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	ttl, err := h.ttl(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	st := h.reg.Stats(h.opt.Now(), ttl)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	err = json.NewEncoder(w).Encode(Stats{TTL: ttl.String(), TTLMS: ttl.Milliseconds(), Active: st.Active, Stale: st.Stale, Expired: st.Expired})
	h.logWrite(r, err)
}

// stream writes a JSON array one element at a time through a small buffer,
// so that a page is never encoded into a second, whole-response buffer.
func stream[T any](h *handler, w http.ResponseWriter, r *http.Request, items []T, each func(T) any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	_, err := bw.WriteString("[")
	for i, it := range items {
		if err != nil {
			break
		}
		if i > 0 {
			_, err = bw.WriteString(",")
		}
		if err == nil {
			err = enc.Encode(each(it))
		}
	}
	if err == nil {
		_, err = bw.WriteString("]\n")
	}
	if err == nil {
		err = bw.Flush()
	}
	h.logWrite(r, err)
}

func (h *handler) logWrite(r *http.Request, err error) {
	if err != nil && h.opt.Logger != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		h.opt.Logger.Warn("presencehttp: writing response", "path", r.URL.Path, "err", err)
	}
}
