package presencehttp

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed351623e9/presence"
)

// listQuery is the parsed query of /consumers or /groups.
type listQuery struct {
	ttl                time.Duration
	queue, group       string
	hasQueue, hasGroup bool
	state              presence.State
	hasState           bool
	search             string // lower case
	limit              int
	after              position
	hasAfter           bool
}

func (h *handler) parseList(q url.Values, consumers bool) (listQuery, error) {
	var lq listQuery
	var err error
	if lq.ttl, err = h.ttl(q); err != nil {
		return lq, err
	}
	_, lq.hasQueue = q["queue"]
	_, lq.hasGroup = q["group"]
	lq.queue, lq.group = q.Get("queue"), q.Get("group")
	if lq.hasGroup && !lq.hasQueue {
		return lq, errors.New("group needs queue")
	}
	if s := q.Get("state"); consumers && s != "" {
		if err := lq.state.UnmarshalText([]byte(s)); err != nil {
			return lq, fmt.Errorf("state: %q is not active, stale or expired", s)
		}
		lq.hasState = true
	}
	if consumers {
		lq.search = strings.ToLower(q.Get("search"))
	}
	lq.limit = h.opt.Limit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if errors.Is(err, strconv.ErrRange) && s[0] != '-' {
			n, err = h.opt.MaxLimit, nil // a whole number, larger than any page
		}
		if err != nil || n < 1 {
			return lq, fmt.Errorf("limit: %q is not a whole number of at least 1", s)
		}
		lq.limit = min(n, h.opt.MaxLimit)
	}
	if s := q.Get("after"); s != "" {
		if lq.after, err = decodePosition(s); err != nil {
			return lq, err
		}
		lq.hasAfter = true
	}
	return lq, nil
}

// keeps reports whether consumer c passes the filters of a /consumers query.
func (lq *listQuery) keeps(c *presence.Consumer) bool {
	return (!lq.hasAfter || lq.after.precedes(c.Key)) &&
		(!lq.hasState || c.State == lq.state) &&
		(lq.search == "" || strings.Contains(strings.ToLower(c.Consumer), lq.search))
}

func (h *handler) consumers(w http.ResponseWriter, r *http.Request) {
	lq, err := h.parseList(r.URL.Query(), true)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	now := h.opt.Now()
	pg := newSmallest(lq.limit+1, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
	// The whole registry is streamed by All and never copied: only the
	// page is kept.
	src := h.reg.All(now, lq.ttl)
	if lq.hasQueue {
		src = slices.Values(h.snapshot(&lq, now))
	}
	for c := range src {
		if lq.keeps(&c) {
			pg.offer(c)
		}
	}
	rows, more := pg.page(lq.limit)
	if more {
		linkNext(w, r, "consumers", position{key: rows[len(rows)-1].Key})
	}
	// One Row, reused: the encoder is done with it before the next.
	var row Row
	stream(h, w, r, rows, func(c presence.Consumer) any { row = toRow(c, lq.ttl); return &row })
}

func (h *handler) groups(w http.ResponseWriter, r *http.Request) {
	lq, err := h.parseList(r.URL.Query(), false)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	now := h.opt.Now()
	pg := newSmallest(lq.limit+1, func(a, b GroupRow) int {
		return compareGroups(presence.GroupKey{Queue: a.Queue, Group: a.Group}, presence.GroupKey{Queue: b.Queue, Group: b.Group})
	})
	offer := func(g presence.GroupKey, n presence.Counts) {
		if n.Total() > 0 && (!lq.hasAfter || lq.after.precedesGroup(g)) {
			pg.offer(GroupRow{Queue: g.Queue, Group: g.Group, Active: n.Active, Stale: n.Stale, Expired: n.Expired})
		}
	}
	// A group or a queue is counted from its own members; only the
	// unfiltered list walks the whole group index.
	if lq.hasQueue {
		countSorted(h.snapshot(&lq, now), offer)
	} else {
		for g, n := range h.reg.CountByGroup(now, lq.ttl) {
			offer(g, n)
		}
	}
	rows, more := pg.page(lq.limit)
	if more {
		last := rows[len(rows)-1]
		linkNext(w, r, "groups", position{key: presence.Key{Queue: last.Queue, Group: last.Group}, groupEnd: true})
	}
	stream(h, w, r, rows, func(g GroupRow) any { return g })
}

// snapshot returns the consumers of the query's group, or else of its
// queue, sorted, from the view that costs the size of the group or queue
// rather than of the registry.
func (h *handler) snapshot(lq *listQuery, now time.Time) []presence.Consumer {
	if lq.hasGroup {
		return h.reg.SnapshotGroup(presence.GroupKey{Queue: lq.queue, Group: lq.group}, now, lq.ttl)
	}
	return h.reg.SnapshotQueue(lq.queue, now, lq.ttl)
}

// countSorted counts the rows of each group of rows, which are sorted by
// group, and hands each group's counts to f.
func countSorted(rows []presence.Consumer, f func(presence.GroupKey, presence.Counts)) {
	for i := 0; i < len(rows); {
		g := groupOf(rows[i].Key)
		var n presence.Counts
		for ; i < len(rows) && rows[i].Queue == g.Queue && rows[i].Group == g.Group; i++ {
			n.Add(rows[i].State)
		}
		f(g, n)
	}
}

// linkNext sets the Link header that asks for the page after p: the same
// query with after=p, as a URL relative to the route, so that it resolves
// under any mount point and names no host.
func linkNext(w http.ResponseWriter, r *http.Request, route string, p position) {
	q := r.URL.Query()
	q.Set("after", p.encode())
	w.Header().Set("Link", "<"+route+"?"+q.Encode()+`>; rel="next"`)
}

// position is a place in the order of presence.CompareKeys: just after
// consumer key, or, with groupEnd, after every consumer of key's group.
type position struct {
	key      presence.Key
	groupEnd bool
}

// errCursor is the 400 for an after that this package did not write.
var errCursor = errors.New("after: not a cursor from this API")

// precedes reports whether consumer k comes after p.
func (p position) precedes(k presence.Key) bool {
	if p.groupEnd {
		return compareGroups(groupOf(k), groupOf(p.key)) > 0
	}
	return presence.CompareKeys(p.key, k) < 0
}

// precedesGroup reports whether group g may hold consumers after p.
func (p position) precedesGroup(g presence.GroupKey) bool {
	c := compareGroups(g, groupOf(p.key))
	return c > 0 || c == 0 && !p.groupEnd
}

func compareGroups(a, b presence.GroupKey) int {
	return cmp.Or(cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.Group, b.Group))
}

// encode writes p as URL-safe base64 of: 'c' or 'g', then the queue and
// the group, each after its uvarint length, then (for 'c') the consumer.
// Names may hold any bytes; the encoding keeps them exactly.
func (p position) encode() string {
	k := p.key
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(k.Queue)+len(k.Group)+len(k.Consumer))
	if p.groupEnd {
		b = append(b, 'g')
	} else {
		b = append(b, 'c')
	}
	b = binary.AppendUvarint(b, uint64(len(k.Queue)))
	b = append(b, k.Queue...)
	b = binary.AppendUvarint(b, uint64(len(k.Group)))
	b = append(b, k.Group...)
	if !p.groupEnd {
		b = append(b, k.Consumer...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePosition(s string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || (b[0] != 'c' && b[0] != 'g') {
		return position{}, errCursor
	}
	p := position{groupEnd: b[0] == 'g'}
	b = b[1:]
	field := func() (string, bool) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return "", false
		}
		f := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return f, true
	}
	var okQ, okG bool
	p.key.Queue, okQ = field()
	p.key.Group, okG = field()
	if !okQ || !okG || (p.groupEnd && len(b) > 0) {
		return position{}, errCursor
	}
	p.key.Consumer = string(b)
	return p, nil
}

// smallest keeps the n smallest values offered to it, by cmp, in a
// max-heap: a page of a large list costs O(len · log n) time and O(n)
// memory, whatever the list's size.
type smallest[T any] struct {
	n   int
	cmp func(a, b T) int
	h   []T
}

func newSmallest[T any](n int, cmp func(a, b T) int) *smallest[T] {
	return &smallest[T]{n: n, cmp: cmp, h: make([]T, 0, min(n, 256))}
}

func (s *smallest[T]) offer(v T) {
	h := s.h
	if len(h) < s.n {
		h = append(h, v)
		for i := len(h) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if s.cmp(h[p], h[i]) >= 0 {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		s.h = h
		return
	}
	if len(h) == 0 || s.cmp(v, h[0]) >= 0 {
		return
	}
	h[0] = v
	for i := 0; ; { // sift down
		l, big := 2*i+1, i
		if l < len(h) && s.cmp(h[l], h[big]) > 0 {
			big = l
		}
		if l+1 < len(h) && s.cmp(h[l+1], h[big]) > 0 {
			big = l + 1
		}
		if big == i {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}

// page returns the kept values sorted, at most limit of them, and whether
// there were more.
func (s *smallest[T]) page(limit int) ([]T, bool) {
	slices.SortFunc(s.h, s.cmp)
	if len(s.h) > limit {
		return s.h[:limit], true
	}
	return s.h, false
}

func groupOf(k presence.Key) presence.GroupKey {
	return presence.GroupKey{Queue: k.Queue, Group: k.Group}
}
