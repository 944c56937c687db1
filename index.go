package presence

import (
	"cmp"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
)

// The group index
//
// Per-group and per-queue views must cost what the group or queue holds, not
// what the registry holds, so the registry keeps a secondary index: every
// (queue, group) that has consumers has a group record holding its entries,
// and every queue has a list of its groups. The index is written only when
// a consumer registers or is removed. A refresh never touches it. The
// ordered walks (Snapshot) and the per-group counts go through it too; the
// unordered whole-registry walk does not (Registry.walk reads the walk
// lists of walklist.go, whose cost per consumer does not depend on the
// groups' sizes).
//
// A queue of one group of one consumer, as with a queue per device, must
// cost little: its index is one 48-byte record and one 16-byte map node.
// Both maps are keyed by 64-bit hashes alone, as the shards are (shard.go),
// so their nodes hold no strings:
//
//   - queues maps a queue's hash to the head of a list of groups linked
//     through the records' next pointers. The list holds every group whose
//     queue has that hash, so queues whose hashes are equal share a list,
//     and a reader skips the other queues' groups. A new group goes to the
//     front of the list, as its head; a dead one is unlinked, in O(1):
//     writers also keep prev pointers, the other way.
//   - groups maps a group's hash (the first two steps of hashKey) to its
//     record, for every group that is not, or was not made as, a list's
//     head: a group made as the head of an empty list, as every group of
//     a queue of one group is, stays out of it until a newer group
//     displaces it from the head, and is entered in it then. A group is
//     found as its list's head or in groups. A group whose hash another
//     group holds there goes to the spill, a plain map under a mutex, as a
//     shard's colliding keys do; spilled counts the spill's groups, so
//     that while it is empty, which it nearly always is, a miss takes no
//     lock.
//
// Every group is made and removed under the bucket lock of its queue's hash
// in queues (Compute), which therefore orders everything that happens to
// the lists and to groups: a group is made, linked and if need be its
// displaced head entered in groups in one step (the head is entered before
// the new group replaces it, so that a lookup finds it all along), and a
// dead group is taken out of both in one step. Readers take no lock. They
// follow the next pointers, which point only at older groups: an unlinked
// group keeps its own pointer, so a reader standing on it goes on to the
// rest of the list, and a group made after a reader started is in front of
// it, out of its reach. So a reader sees every group that stays in the
// list throughout its walk, and never two groups of one key, even when a
// group dies and its key comes back while the reader walks. It skips dead
// groups.
//
// Members are kept in an array that only grows at its end between
// compactions: a leaving member stays in it, retired, until the retired
// ones outnumber the live ones and the array is rebuilt without them. A
// reader copies the array's pointer and length under the group's lock and
// reads the elements without it: appends write past the reader's length,
// and a compaction builds a new array, so what a reader holds never
// changes. A group's first array is its first member field itself, so a
// group of one costs no array of its own.
//
// The records hold no copies of their keys: a group's key is the strings of
// its first member, which an entry never changes (internal/entry), and
// which the group keeps referenced after that member leaves.
//
// Lock order: a shard's bucket lock (registration joins the group inside the
// shard's Compute, so an entry is in its group before it is visible in its
// shard), then group.mu, then the queues map's bucket, then the groups
// map's bucket, then the spill's mutex. A walk list's mutex (walklist.go)
// is taken after all of these are released.

// group is the index record of one (queue, group): 48 bytes on a 64-bit
// platform.
type group struct {
	mu sync.Mutex
	// n is the length of the member array at ms, retired members included
	// until the next compaction; readers skip retired members. Its
	// capacity is at least capFor(n). ms and n change only under mu. A
	// group would need 2^31 members, over 100 GiB of entries, to overflow
	// n.
	n int32
	// live counts the members that have joined and not left. It is
	// written under mu; it drops to 0 only when the last member leaves,
	// and the group is then dead for good: a joiner that finds it dead
	// looks the group up again, and readers of the queue's list skip it.
	live atomic.Int32
	// first is the group's first member: its key, and its first array.
	first *entry.Entry
	ms    **entry.Entry
	// next is the next group in the list of the queue's hash.
	next atomic.Pointer[group]
	// prev is the group whose next this one is, nil for the list's head,
	// so that a dead group is unlinked without a search of its list: a
	// queue's groups die oldest first, at the far end of the list, when
	// PruneExpired sweeps them. Only writers use it, under the bucket lock
	// of the queue's hash.
	prev *group
}

// index is the group index: see the comment at the top of this file.
type index struct {
	seed    maphash.Seed // the registry's
	hmask   uint64       // the registry's
	queues  *xsync.MapOf[uint64, *group]
	groups  *xsync.MapOf[uint64, *group]
	spilled atomic.Int64
	spillMu sync.Mutex
	spill   map[GroupKey]*group      // keys are the groups' own strings
	spare   atomic.Pointer[walkBufs] // see sortedGroups
}

// init makes the index's maps. Neither is sized from WithPresize: the
// number of queues and groups that n consumers make is anything from 1 to
// n, and a walk of the index (each) visits every bucket of the queues
// map's table, so a table sized for n queues that holds a few would make
// every CountByGroup and Snapshot pay for n/4 empty buckets. A registry of
// one queue per consumer pays for the growth instead, about 15% of its
// registration time.
func (ix *index) init(seed maphash.Seed, hmask uint64) {
	ix.seed, ix.hmask = seed, hmask
	ix.queues = xsync.NewMapOfWithHasher[uint64, *group](hashSelf)
	ix.groups = xsync.NewMapOfWithHasher[uint64, *group](hashSelf)
}

// hashes returns the hashes of gk's queue and of gk itself.
func (ix *index) hashes(gk GroupKey) (qh, gh uint64) {
	qh = maphash.String(ix.seed, gk.Queue)
	gh = chainHash(qh) ^ maphash.String(ix.seed, gk.Group)
	return qh & ix.hmask, gh & ix.hmask
}

// key returns the group's key: its first member's strings.
func (g *group) key() GroupKey {
	q, grp, _ := g.first.Key()
	return GroupKey{Queue: q, Group: grp}
}

// is reports whether gk is the group's key.
func (g *group) is(gk GroupKey) bool { return g.key() == gk }

// join adds e to its group, creating the group if needed. It fails with
// ErrGroupFull if the group already has limit members (limit 0: none). gk's
// strings must be e's own: a new group keeps them as its keys.
func (ix *index) join(gk GroupKey, e *entry.Entry, limit int) error {
	qh, gh := ix.hashes(gk)
	for {
		g := ix.load(qh, gh, gk)
		pause(hookGroupLoaded)
		if g == nil {
			var created bool
			if g, created = ix.create(qh, gh, gk, e); created {
				return nil
			}
		}
		g.mu.Lock()
		live := g.live.Load()
		if live == 0 { // dead: its last member left since we found it
			g.mu.Unlock()
			continue
		}
		if limit > 0 && int(live) >= limit {
			g.mu.Unlock()
			return ErrGroupFull
		}
		g.add(e)
		g.mu.Unlock()
		return nil
	}
}

// load returns gk's group, or nil. It takes no lock unless the spill holds
// groups. It finds every group that exists throughout the call; it may
// miss one being made, and may return one that is dying.
func (ix *index) load(qh, gh uint64, gk GroupKey) *group {
	if g, ok := ix.queues.Load(qh); ok && g.is(gk) {
		return g
	}
	return ix.loadMapped(gh, gk)
}

// loadMapped returns gk's group if it is in groups, or nil.
func (ix *index) loadMapped(gh uint64, gk GroupKey) *group {
	if g, ok := ix.groups.Load(gh); ok && g.is(gk) {
		return g
	}
	if ix.spilled.Load() == 0 {
		return nil
	}
	ix.spillMu.Lock()
	defer ix.spillMu.Unlock()
	return ix.spill[gk]
}

// create makes gk's group with e as its only member and puts it at the
// front of its queue's list, under the bucket lock of the queue's hash, so
// that a group is made once. If the group exists, made by another
// registration or dying, create returns it instead, with created false.
func (ix *index) create(qh, gh uint64, gk GroupKey, e *entry.Entry) (g *group, created bool) {
	ix.queues.Compute(qh, func(head *group, loaded bool) (*group, bool) {
		if loaded {
			// Under this lock, no group of this queue is made or removed.
			if head.is(gk) {
				g = head
				return head, false
			}
			if g = ix.loadMapped(gh, gk); g != nil {
				return head, false
			}
			if _, hgh := ix.hashes(head.key()); !ix.mapped(hgh, head) {
				ix.enter(hgh, head)
			}
		}
		g, created = &group{first: e, n: 1}, true
		g.ms = &g.first
		g.live.Store(1)
		g.next.Store(head)
		if head != nil {
			head.prev = g
		}
		return g, false
	})
	return g, created
}

// mapped reports whether g, whose hash is gh, is in groups or in the
// spill, where it stays from when it is entered until it dies. The bucket
// lock of g's queue's hash is held, under which alone g is entered and
// taken out.
func (ix *index) mapped(gh uint64, g *group) bool {
	if cur, ok := ix.groups.Load(gh); ok && cur == g {
		return true
	}
	if ix.spilled.Load() == 0 {
		return false
	}
	ix.spillMu.Lock()
	defer ix.spillMu.Unlock()
	return ix.spill[g.key()] == g
}

// enter puts g in groups, or in the spill if another group holds its hash.
// The bucket lock of g's queue's hash is held.
func (ix *index) enter(gh uint64, g *group) {
	ix.groups.Compute(gh, func(cur *group, loaded bool) (*group, bool) {
		if !loaded {
			return g, false
		}
		ix.spillMu.Lock()
		defer ix.spillMu.Unlock()
		if ix.spill == nil {
			ix.spill = map[GroupKey]*group{}
		}
		ix.spill[g.key()] = g
		ix.spilled.Add(1)
		return cur, false
	})
}

// add appends e to g's members. g.mu is held.
func (g *group) add(e *entry.Entry) {
	ms := unsafe.Slice(g.ms, capFor(g.n))[:g.n]
	if len(ms) == cap(ms) {
		ms = append(make([]*entry.Entry, 0, 2*len(ms)), ms...)
	}
	g.set(append(ms, e))
	g.live.Add(1)
}

// capFor returns the capacity a member array of n members is known to
// have: n rounded up to a power of two. The group keeps no capacity:
// arrays are made with room for at least that (add, compactIfSparse).
func capFor(n int32) int {
	return 1 << bits.Len32(uint32(max(n, 1)-1))
}

// set makes ms g's member array. g.mu is held.
func (g *group) set(ms []*entry.Entry) {
	g.ms, g.n = unsafe.SliceData(ms), int32(len(ms))
}

// leave removes e from its group, and the group from the index when e was
// its last member.
func (ix *index) leave(gk GroupKey, e *entry.Entry) {
	qh, gh := ix.hashes(gk)
	g := ix.load(qh, gh, gk)
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if live := g.live.Add(-1); live > 0 {
		g.compactIfSparse(live)
		return
	}
	ix.queues.Compute(qh, func(head *group, _ bool) (*group, bool) {
		if ix.mapped(gh, g) {
			ix.unmap(gh, gk, g)
		}
		next, prev := g.next.Load(), g.prev
		g.prev = nil // g keeps next, for readers standing on it
		if next != nil {
			next.prev = prev
		}
		if prev == nil { // g is the head
			return next, next == nil
		}
		prev.next.Store(next)
		return head, false
	})
}

// unmap takes g out of groups, or out of the spill. The bucket lock of its
// queue's hash is held.
func (ix *index) unmap(gh uint64, gk GroupKey, g *group) {
	ix.groups.Compute(gh, func(cur *group, loaded bool) (*group, bool) {
		if loaded && cur == g {
			return cur, true
		}
		ix.spillMu.Lock()
		defer ix.spillMu.Unlock()
		delete(ix.spill, gk)
		ix.spilled.Add(-1)
		return cur, !loaded
	})
}

// compactIfSparse rebuilds the member array without its retired entries
// once they outnumber the live ones. g.mu is held.
func (g *group) compactIfSparse(live int32) {
	if g.n-live <= live {
		return
	}
	g.set(compact(unsafe.Slice(g.ms, g.n), capFor(live), (*entry.Entry).Live))
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

// view returns g's members as they are now. The caller may read them
// without the lock, and must skip retired members.
func (g *group) view() []*entry.Entry {
	g.mu.Lock()
	ms, n := g.ms, g.n
	g.mu.Unlock()
	return unsafe.Slice(ms, n)
}

// group returns gk's group, or nil.
func (ix *index) group(gk GroupKey) *group {
	qh, gh := ix.hashes(gk)
	return ix.load(qh, gh, gk)
}

// list returns the head of the list of queue's hash, or nil.
func (ix *index) list(queue string) *group {
	qh, _ := ix.hashes(GroupKey{Queue: queue})
	head, _ := ix.queues.Load(qh)
	return head
}

// walkList calls f with the groups of the list from head, dead ones
// included, until f returns false, and reports whether f did. It takes no
// lock.
func walkList(head *group, f func(*group) bool) bool {
	for g := head; g != nil; g = g.next.Load() {
		if !f(g) {
			return false
		}
		pause(hookListStep)
	}
	return true
}

// eachOf calls f with every live group of queue.
func (ix *index) eachOf(queue string, f func(*group)) {
	walkList(ix.list(queue), func(g *group) bool {
		if g.live.Load() > 0 && g.key().Queue == queue {
			f(g)
		}
		return true
	})
}

// each calls f with every live group, the groups of a list one after the
// other, until f returns false. It takes no lock but the buckets' of
// queues, one at a time, while it copies a bucket (xsync's Range), and is
// weakly consistent like sync.Map.Range: it sees every group that is live
// throughout, once.
func (ix *index) each(f func(*group) bool) {
	ix.queues.Range(func(_ uint64, head *group) bool {
		return walkList(head, func(g *group) bool { return g.live.Load() == 0 || f(g) })
	})
}

// walkBufs are the scratch lists of a sorted walk (Registry.AppendSnapshot).
type walkBufs struct {
	groups  []keyedGroup
	members []namedEntry
	filled  int // the longest members has been since the last putBufs
}

// namedEntry is a member with its consumer name, to be sorted by it.
type namedEntry struct {
	name string
	e    *entry.Entry
}

// sortedGroups returns the groups of queue, or every group if all is set,
// with their keys, ordered by queue, then group name. The lists are the
// index's spare ones when no other walk holds them, so that a poller that
// reuses its rows allocates nothing; the caller gives them back with
// putBufs.
func (ix *index) sortedGroups(queue string, all bool) *walkBufs {
	buf := ix.spare.Swap(nil)
	if buf == nil {
		buf = new(walkBufs)
	}
	gs := buf.groups[:0]
	add := func(g *group) { gs = append(gs, keyedGroup{g.key(), g}) }
	if all {
		ix.each(func(g *group) bool { add(g); return true })
	} else {
		ix.eachOf(queue, add)
	}
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
	buf.filled = max(buf.filled, len(ms))
	return ms
}

// putBufs clears buf, so that it holds nothing alive, and keeps it as the
// spare. The member list is cleared as far as the walk's largest group
// filled it: each group reused it from the start, so a larger group sorted
// before the last one left members past its end.
func (ix *index) putBufs(buf *walkBufs) {
	clear(buf.groups)
	clear(buf.members[:buf.filled])
	buf.filled = 0
	ix.spare.Store(buf)
}

type keyedGroup struct {
	k GroupKey
	g *group
}
