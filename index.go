package presence

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
)

// The group index
//
// Per-group and per-queue views must cost what the group or queue holds, not
// what the registry holds, so the registry keeps a secondary index: every
// (queue, group) that has consumers maps to a group holding its entries, and
// every queue maps to the list of its groups. The index is written only when
// a consumer registers or is removed. A refresh never touches it. The ordered
// walks (Snapshot) and the per-group counts go through it too; the
// unordered whole-registry walk does not (Registry.walk reads the walk
// lists of walklist.go, whose cost per consumer does not depend on the
// groups' sizes).
//
// Members are kept in a slice that only grows at its end between
// compactions: a leaving member stays in it, retired, until the retired ones
// outnumber the live ones and the slice is rebuilt without them. A reader
// copies the slice header under the group's lock and reads the elements
// without it: appends write past the reader's length, and a compaction
// builds a new array, so what a reader holds never changes. A group of one
// keeps its member in the group record itself and costs no slice of its
// own; the same goes for a queue of one group.
//
// The records hold no copies of their keys: the map keys are the strings of
// the group's first member, which an entry never changes (internal/entry).
//
// Lock order: a shard's bucket lock (registration joins the group inside the
// shard's Compute, so an entry is in its group before it is visible in its
// shard), then group.mu, then the groups map's bucket, then queue.mu, then
// the queues map's bucket. A walk list's mutex (walklist.go) is taken after
// all of these are released.

// group is the index record of one (queue, group).
type group struct {
	q  *queue
	mu sync.Mutex
	// members are the group's entries, retired ones included until the
	// next compaction; readers skip retired entries.
	members []*entry.Entry
	one     [1]*entry.Entry // the first member's slot: members' first array
	live    int32           // members that have joined and not left
	gone    int32           // members that left since the last compaction
	// dead is set, under mu, when the last member leaves and the group is
	// being unlinked; a joiner that finds it dead looks the group up again.
	// It is atomic because its queue reads it, under the queue's lock only,
	// when it drops dead groups from its list.
	dead atomic.Bool
}

// queue is the index record of one queue: the list of its groups.
type queue struct {
	mu     sync.Mutex
	groups []*group // dead groups included until the next compaction
	one    [1]*group
	live   int32
	gone   int32
	dead   bool
}

type index struct {
	groups *xsync.MapOf[GroupKey, *group]
	queues *xsync.MapOf[string, *queue]
	spare  atomic.Pointer[walkBufs] // see sortedGroups
}

func newIndex() index {
	return index{
		groups: xsync.NewMapOf[GroupKey, *group](),
		queues: xsync.NewMapOf[string, *queue](),
	}
}

// join adds e to its group, creating the group if needed. It fails with
// ErrGroupFull if the group already has limit members (limit 0: none). gk's
// strings must be e's own: a new group keeps them as its keys.
func (ix *index) join(gk GroupKey, e *entry.Entry, limit int) error {
	for {
		created := false
		g, _ := ix.groups.LoadOrCompute(gk, func() *group {
			created = true
			return ix.newGroup(gk, e)
		})
		if created {
			return nil
		}
		g.mu.Lock()
		if g.dead.Load() {
			g.mu.Unlock()
			continue
		}
		if limit > 0 && int(g.live) >= limit {
			g.mu.Unlock()
			return ErrGroupFull
		}
		g.members = append(g.members, e)
		g.live++
		g.mu.Unlock()
		return nil
	}
}

// newGroup makes the record of a new group whose first member is e, and
// adds it to its queue. It runs inside the groups map's compute, so each
// group is made once, and the group is published with e in it.
func (ix *index) newGroup(gk GroupKey, e *entry.Entry) *group {
	g := &group{live: 1}
	g.one[0] = e
	g.members = g.one[:]
	for {
		created := false
		q, _ := ix.queues.LoadOrCompute(gk.Queue, func() *queue {
			created = true
			q := &queue{live: 1}
			q.one[0] = g
			q.groups = q.one[:]
			return q
		})
		g.q = q
		if created {
			return g
		}
		q.mu.Lock()
		if q.dead {
			q.mu.Unlock()
			continue
		}
		q.groups = append(q.groups, g)
		q.live++
		q.mu.Unlock()
		return g
	}
}

// leave removes e from its group, and the group from the index when it was
// the last member.
func (ix *index) leave(gk GroupKey, e *entry.Entry) {
	g, ok := ix.groups.Load(gk)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead.Load() {
		return
	}
	g.live--
	g.gone++
	if g.live > 0 {
		g.compactIfSparse()
		return
	}
	g.dead.Store(true)
	ix.groups.Compute(gk, func(cur *group, loaded bool) (*group, bool) {
		return cur, !loaded || cur == g
	})
	q := g.q
	q.mu.Lock()
	q.live--
	q.gone++
	switch {
	case q.live == 0:
		q.dead = true
		ix.queues.Compute(gk.Queue, func(cur *queue, loaded bool) (*queue, bool) {
			return cur, !loaded || cur == q
		})
	case q.gone > q.live:
		q.groups = compact(q.groups, int(q.live), func(g *group) bool { return !g.dead.Load() })
		q.gone = 0
	}
	q.mu.Unlock()
}

// compactIfSparse rebuilds the member list without its retired entries
// once the departed outnumber the live. g.mu is held.
func (g *group) compactIfSparse() {
	if g.gone > g.live {
		g.members = compact(g.members, int(g.live), (*entry.Entry).Live)
		g.gone = 0
	}
}

// compact returns a new slice of the elements of xs that keep accepts,
// with room for n; xs itself is left as it is, for readers that hold it.
func compact[T any](xs []T, n int, keep func(T) bool) []T {
	out := make([]T, 0, n)
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// view returns g's member slice as it is now. The caller may read it
// without the lock, and must skip retired members.
func (g *group) view() []*entry.Entry {
	g.mu.Lock()
	ms := g.members
	g.mu.Unlock()
	return ms
}

// groupsOf returns the live groups of queue name.
func (ix *index) groupsOf(name string) []*group {
	q, ok := ix.queues.Load(name)
	if !ok {
		return nil
	}
	q.mu.Lock()
	gs := q.groups
	q.mu.Unlock()
	return gs
}

// walkBufs are the scratch lists of a sorted walk (Registry.AppendSnapshot).
type walkBufs struct {
	groups  []keyedGroup
	members []namedEntry
}

// namedEntry is a member with its consumer name, to be sorted by it.
type namedEntry struct {
	name string
	e    *entry.Entry
}

// sortedGroups returns every group with its key, ordered by queue, then
// group name. The lists are the index's spare ones when no other walk holds
// them, so that a poller that reuses its rows allocates nothing; the caller
// gives them back with putBufs.
func (ix *index) sortedGroups() *walkBufs {
	buf := ix.spare.Swap(nil)
	if buf == nil {
		buf = new(walkBufs)
	}
	gs := buf.groups[:0]
	ix.groups.Range(func(k GroupKey, g *group) bool {
		gs = append(gs, keyedGroup{k, g})
		return true
	})
	slices.SortFunc(gs, func(a, b keyedGroup) int { return compareGroupKeys(a.k, b.k) })
	buf.groups = gs
	return buf
}

// sortedMembers returns g's live members ordered by consumer name, in
// buf's member list.
func (buf *walkBufs) sortedMembers(g *group) []namedEntry {
	ms := buf.members[:0]
	for _, e := range g.view() {
		if e.Live() {
			_, _, c := e.Key()
			ms = append(ms, namedEntry{c, e})
		}
	}
	if len(ms) > 1 {
		slices.SortFunc(ms, func(a, b namedEntry) int { return cmp.Compare(a.name, b.name) })
	}
	buf.members = ms
	return ms
}

// putBufs clears buf, so that it holds nothing alive, and keeps it as the
// spare.
func (ix *index) putBufs(buf *walkBufs) {
	clear(buf.groups)
	clear(buf.members)
	ix.spare.Store(buf)
}

type keyedGroup struct {
	k GroupKey
	g *group
}
