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
//	GET /                                        the live page
//	GET /consumers?queue=&group=&state=&ttl=     JSON array of consumers
//	GET /groups?queue=&ttl=                      JSON array of counts per group
//
// ttl is a Go duration ("30s"); it defaults to Options.TTL. group requires
// queue. state is "active", "stale" or "expired". A bad parameter gets 400
// with {"error": "..."}, a method other than GET or HEAD gets 405.
package presencehttp

import (
	"bufio"
	"cmp"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
}

type handler struct {
	reg *presence.Registry
	opt Options
}

// New returns the handler for r.
func New(r *presence.Registry, opt Options) http.Handler {
	if opt.TTL <= 0 {
		opt.TTL = presence.DefaultTTL
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &handler{reg: r, opt: opt}
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
}

// GroupRow is the JSON form of one group's counts.
type GroupRow struct {
	Queue   string `json:"queue"`
	Group   string `json:"group"`
	Active  int    `json:"active"`
	Stale   int    `json:"stale"`
	Expired int    `json:"expired"`
}

func toRow(c presence.Consumer) Row {
	r := Row{
		Queue: c.Queue, Group: c.Group, Consumer: c.Consumer,
		RegisteredAt: c.RegisteredAt, LastHeartbeat: c.LastHeartbeat,
		LastSeenAgeMS: c.Age.Milliseconds(), LeaseCount: c.Leases, State: c.State.String(),
	}
	if !c.LastActive.IsZero() {
		t := c.LastActive
		r.LastActive = &t
	}
	return r
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/") {
	case "":
		if r.URL.Path == "" { // mounted at "/x" and asked for "/x": relative links need "/x/"
			path, _, _ := strings.Cut(r.RequestURI, "?")
			http.Redirect(w, r, path+"/", http.StatusMovedPermanently)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	case "consumers":
		h.consumers(w, r)
	case "groups":
		h.groups(w, r)
	default:
		h.fail(w, http.StatusNotFound, "no such resource %q", r.URL.Path)
	}
}

func (h *handler) fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (h *handler) ttl(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("ttl")
	if s == "" {
		return h.opt.TTL, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("ttl: %q is not a non-negative duration such as 30s", s)
	}
	return d, nil
}

func (h *handler) consumers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ttl, err := h.ttl(r)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	var want *presence.State
	if s := q.Get("state"); s != "" {
		var st presence.State
		if err := st.UnmarshalText([]byte(s)); err != nil {
			h.fail(w, http.StatusBadRequest, "state: %q is not active, stale or expired", s)
			return
		}
		want = &st
	}
	queue, group := q.Get("queue"), q.Get("group")
	_, hasQueue := q["queue"]
	_, hasGroup := q["group"]
	if hasGroup && !hasQueue {
		h.fail(w, http.StatusBadRequest, "group needs queue")
		return
	}
	now := h.opt.Now()
	// The cheapest view for the filters.
	var rows []presence.Consumer
	switch {
	case hasGroup:
		rows = h.reg.SnapshotGroup(presence.GroupKey{Queue: queue, Group: group}, now, ttl)
	case hasQueue:
		rows = h.reg.SnapshotQueue(queue, now, ttl)
	default:
		rows = h.reg.Snapshot(now, ttl)
	}
	h.stream(w, r, func(emit func(any) bool) {
		for _, c := range rows {
			if want != nil && c.State != *want {
				continue
			}
			if !emit(toRow(c)) {
				return
			}
		}
	})
}

func (h *handler) groups(w http.ResponseWriter, r *http.Request) {
	ttl, err := h.ttl(r)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	queue, hasQueue := r.URL.Query()["queue"]
	counts := h.reg.CountByGroup(h.opt.Now(), ttl)
	rows := make([]GroupRow, 0, len(counts))
	for g, c := range counts {
		if hasQueue && g.Queue != queue[0] {
			continue
		}
		rows = append(rows, GroupRow{Queue: g.Queue, Group: g.Group, Active: c.Active, Stale: c.Stale, Expired: c.Expired})
	}
	slices.SortFunc(rows, func(a, b GroupRow) int {
		return cmp.Or(cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.Group, b.Group))
	})
	h.stream(w, r, func(emit func(any) bool) {
		for _, g := range rows {
			if !emit(g) {
				return
			}
		}
	})
}

// stream writes a JSON array one element at a time through a small buffer,
// so that a large registry is never encoded into a second, whole-response
// buffer.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, each func(emit func(any) bool)) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	var err error
	first := true
	_, err = bw.WriteString("[")
	each(func(v any) bool {
		if err != nil {
			return false
		}
		if !first {
			_, err = bw.WriteString(",")
		}
		first = false
		if err == nil {
			err = enc.Encode(v)
		}
		return err == nil
	})
	if err == nil {
		_, err = bw.WriteString("]\n")
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil && h.opt.Logger != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		h.opt.Logger.Warn("presencehttp: writing response", "path", r.URL.Path, "err", err)
	}
}
