package presence

import (
	"cmp"
	"iter"
	"slices"
	"time"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Consumer is one row of a snapshot.
type Consumer struct {
	Key
	// RegisteredAt is the time of the first heartbeat since the consumer
	// was last registered. It never changes while the consumer stays.
	RegisteredAt time.Time
	// LastHeartbeat is the time of the newest heartbeat: when the consumer
	// was last seen.
	LastHeartbeat time.Time
	// LastActive is the time of the newest heartbeat that reported
	// Leases > 0: when the consumer last had work. It is the zero Time if
	// no heartbeat since registration has. A poller that beats but never
	// gets messages is alive (LastHeartbeat is recent) but idle
	// (LastActive is old or zero).
	LastActive time.Time
	// Age is now minus LastHeartbeat for the now of the read, never
	// negative.
	Age time.Duration
	// Leases is the lease count reported by the newest heartbeat. The
	// registry stores it verbatim and never infers aliveness from it.
	Leases uint32
	// State classifies Age under TTL, or under the TTL of the read if TTL
	// is 0.
	State State
	// TTL is the heartbeat budget the consumer declared
	// (Registry.HeartbeatWithTTL), clamped to the registry's bounds, which
	// State was judged by; 0 if it declared none and was judged by the TTL
	// of the read. Merge carries it over, and a checkpoint keeps it.
	TTL time.Duration
}

// row builds the snapshot row of a live entry from one consistent reading
// of it (entry.Entry.Load).
func row(k Key, e *entry.Entry, now int64, ttl time.Duration) (Consumer, bool) {
	st, ok := e.Load()
	if !ok {
		return Consumer{}, false
	}
	pause(hookRowRead)
	age, state := classifyAt(now, st.HB, judge(st.TTL, ttl))
	return Consumer{
		Key:           k,
		RegisteredAt:  nanotime.ToTime(st.Registered),
		LastHeartbeat: nanotime.ToTime(st.HB),
		LastActive:    entry.TimeOrZero(st.Active),
		Age:           age,
		Leases:        st.Leases,
		State:         state,
		TTL:           st.TTL,
	}, true
}

func compareConsumers(a, b Consumer) int {
	return CompareKeys(a.Key, b.Key)
}

// CompareKeys orders keys by Queue, then Group, then Consumer, byte-wise: the
// order of Snapshot. It returns -1, 0 or +1.
func CompareKeys(a, b Key) int {
	if c := compareGroupKeys(GroupKey{a.Queue, a.Group}, GroupKey{b.Queue, b.Group}); c != 0 {
		return c
	}
	return cmp.Compare(a.Consumer, b.Consumer)
}

// compareGroupKeys orders groups by Queue, then Group, byte-wise.
func compareGroupKeys(a, b GroupKey) int {
	if c := cmp.Compare(a.Queue, b.Queue); c != 0 {
		return c
	}
	return cmp.Compare(a.Group, b.Group)
}

// Every view is weakly consistent, like sync.Map.Range: it never blocks
// heartbeats for longer than one bucket copy or one group-lock copy, and a
// consumer that changes while it runs may or may not be reflected. No view
// lists a consumer twice.
//
// Every view takes the TTL of the read: a consumer that declared its own
// (HeartbeatWithTTL) is judged by that one instead, and its row says which
// (Consumer.TTL).

// Snapshot returns every consumer, sorted by Queue, then Group, then
// Consumer, compared byte-wise, with Age and State computed for now and ttl.
// Expired consumers are included until PruneExpired removes them.
//
// Snapshot visits the groups one at a time, in order, and never stops the
// world. It sorts the groups, then the consumers within each group: O(n log
// m) for n consumers in groups of m, plus O(g log g) for g groups. It
// allocates the result; a dashboard that polls can reuse its slice with
// AppendSnapshot.
func (r *Registry) Snapshot(now time.Time, ttl time.Duration) []Consumer {
	return r.AppendSnapshot(make([]Consumer, 0, r.Len()), now, ttl)
}

// AppendSnapshot appends the rows of Snapshot to dst, sorted as Snapshot
// sorts them, and returns the extended slice; the rows already in dst are
// left as they are. It allocates only if dst lacks the capacity.
func (r *Registry) AppendSnapshot(dst []Consumer, now time.Time, ttl time.Duration) []Consumer {
	r.mustBeMade()
	return r.appendSorted(dst, "", true, nanotime.FromTime(now), ttl)
}

// appendSorted appends the rows of queue's groups, or of every group if all
// is set, sorted as Snapshot sorts them: the groups in key order, and each
// group's members sorted by name, 24 bytes each, before the rows are built
// in that order, which is cheaper than sorting 150-byte rows.
func (r *Registry) appendSorted(dst []Consumer, queue string, all bool, now int64, ttl time.Duration) []Consumer {
	buf := r.ix.sortedGroups(queue, all)
	defer r.ix.putBufs(buf)
	for _, kg := range buf.groups {
		for _, m := range buf.sortedMembers(kg.g) {
			if c, ok := row(entryKey(m.e), m.e, now, ttl); ok {
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// All returns an iterator over every consumer, in no particular order,
// without copying the registry: rows are built one at a time as the caller
// ranges, and passes each consumer at most once. Stopping the range early
// stops the walk.
func (r *Registry) All(now time.Time, ttl time.Duration) iter.Seq[Consumer] {
	ns := nanotime.FromTime(now)
	return func(yield func(Consumer) bool) {
		r.walk(func(ms []*entry.Entry) bool {
			for _, e := range ms {
				if c, ok := row(entryKey(e), e, ns, ttl); ok && !yield(c) {
					return false
				}
			}
			return true
		})
	}
}

// Lookup returns consumer k's row at now under ttl, and whether k is
// registered. It costs one hash and one lock-free map read (plus a mutex,
// for the rare key whose 64-bit hash another key holds; see shard.go).
func (r *Registry) Lookup(k Key, now time.Time, ttl time.Duration) (Consumer, bool) {
	sl, ok := r.lookup(&k)
	if !ok {
		return Consumer{}, false
	}
	return row(entryKey(sl.e), sl.e, nanotime.FromTime(now), ttl)
}

// SnapshotGroup returns the consumers of group g, sorted as Snapshot sorts
// them. Its cost grows with the size of the group, not of the registry: it
// reads the group index, holding the group's lock only while it copies the
// member pointers.
func (r *Registry) SnapshotGroup(g GroupKey, now time.Time, ttl time.Duration) []Consumer {
	r.mustBeMade()
	grp := r.ix.group(g)
	if grp == nil {
		return []Consumer{}
	}
	return rows(grp.view(), nanotime.FromTime(now), ttl)
}

// SnapshotQueue returns the consumers of every group of queue, sorted as
// Snapshot sorts them. Its cost grows with the size of the queue, not of the
// registry: it sorts the queue's groups, then each group's members.
func (r *Registry) SnapshotQueue(queue string, now time.Time, ttl time.Duration) []Consumer {
	r.mustBeMade()
	n := 0
	r.ix.eachOf(queue, func(g *group) { n += int(g.live.Load()) })
	return r.appendSorted(make([]Consumer, 0, n), queue, false, nanotime.FromTime(now), ttl)
}

// rows builds the sorted rows of the live entries among es.
func rows(es []*entry.Entry, now int64, ttl time.Duration) []Consumer {
	out := make([]Consumer, 0, len(es))
	for _, e := range es {
		if c, ok := row(entryKey(e), e, now, ttl); ok {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, compareConsumers)
	return out
}

// Counts is the number of consumers in each state.
type Counts struct {
	Active, Stale, Expired int
}

// Total returns Active + Stale + Expired.
func (c Counts) Total() int { return c.Active + c.Stale + c.Expired }

// Add counts one consumer in state s; a value outside the three states
// counts as Expired.
func (c *Counts) Add(s State) {
	switch s {
	case Active:
		c.Active++
	case Stale:
		c.Stale++
	default:
		c.Expired++
	}
}

// Stats counts every consumer by state at now under ttl. It is one pass over
// the registry's walk lists, with no allocation and no sort.
func (r *Registry) Stats(now time.Time, ttl time.Duration) Counts {
	w := newWindow(nanotime.FromTime(now), ttl)
	var st Counts
	r.walk(func(ms []*entry.Entry) bool {
		st.count(ms, &w)
		return true
	})
	return st
}

// count adds the live ones among entries ms to c, classified by w.
func (c *Counts) count(ms []*entry.Entry, w *window) {
	for _, e := range ms {
		if hb := e.HB(); hb != nanotime.None {
			st := w.plain(hb)
			if declared := e.TTL(); declared != 0 {
				st = w.own(hb, declared)
			}
			c.Add(st)
		}
	}
}

// CountByGroup returns, for every group with at least one consumer, how
// many are Active, Stale and Expired at now under ttl. It walks the group
// index: no snapshot, no sort, and no hashing of keys per consumer.
func (r *Registry) CountByGroup(now time.Time, ttl time.Duration) map[GroupKey]Counts {
	out := make(map[GroupKey]Counts)
	r.eachGroupCount(now, ttl, func(g GroupKey, c Counts) {
		if c.Total() > 0 {
			out[g] = c
		}
	})
	return out
}

// CountActiveByGroup returns the number of Active consumers of every
// (queue, group) that has at least one; groups with none are absent. Like
// CountByGroup it walks the group index and builds no snapshot.
func (r *Registry) CountActiveByGroup(now time.Time, ttl time.Duration) map[GroupKey]int {
	out := make(map[GroupKey]int)
	r.eachGroupCount(now, ttl, func(g GroupKey, c Counts) {
		if c.Active > 0 {
			out[g] = c.Active
		}
	})
	return out
}

// eachGroupCount counts the live members of every group, one group lock at
// a time.
func (r *Registry) eachGroupCount(now time.Time, ttl time.Duration, f func(GroupKey, Counts)) {
	r.mustBeMade()
	w := newWindow(nanotime.FromTime(now), ttl)
	r.ix.each(func(g *group) bool {
		var c Counts
		c.count(g.view(), &w)
		f(g.key(), c)
		return true
	})
}
