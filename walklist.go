package presence

import (
	"sync"
	"unsafe"

	"github.com/seed351623e9/presence/internal/entry"
)

// The walk lists
//
// A walk over the whole registry (Registry.walk: PruneExpired, Stats, All,
// WriteTo, CollectChanged, MarkAllChanged) must cost what reading the
// consumers costs, whatever the shape of their groups. Going through the
// group index costs a map node and a group record per group before the
// first entry is reached: for a registry of one-consumer groups, three
// dependent cache misses per consumer. So the registry also keeps every
// entry in one of a few dense lists, as many as it has shards up to
// maxLists, and a walk reads the lists one after the other: sequential
// reads of pointer arrays, and entry loads that do not depend on each
// other, which the CPU overlaps.
//
// An entry's list is picked by its address, one heap page (listStripe) at
// a time, not by its key's hash. Entries registered one after another sit
// next to each other in memory, and a list keeps them in that order, so a
// walk reads memory forwards and the hardware prefetcher runs ahead of it;
// lists picked by hash would scatter neighbours over every list, and
// measured four times slower. Registrations on different cores allocate
// from different pages, and so mostly take different lists' locks.
//
// A list follows the group index's scheme for its member slices (see
// index.go): it only grows at its end between compactions; a removed entry
// stays, retired, until the retired ones outnumber the live ones or take
// too much memory (retiredBytesPerSlot), and the list is rebuilt without
// them; a reader copies the slice header under the list's lock and reads
// the elements without it. Appends write past the reader's length and a
// compaction builds a new array, so what a reader holds never changes
// under it.
//
// Every entry a shard holds, in its map or in its spill, is in one list
// exactly once: a registration appends its new entry inside the compute
// that publishes it (Registry.upsert), after the entry has joined its group
// and before it is visible in its shard's map, and the removal that
// retires it gives its place back (Registry.remove), under the same bucket
// lock. Restores from checkpoints and mirrors register through the same
// path.
//
// A walk copies every list's header before it reads any entry. A key's new
// entry is appended only after its previous one is retired, and may land
// in another list; had the walk read a list's entries before copying the
// next list's header, it could pass the old entry, live, and then the new
// one in a list it copied later. Copied first, the headers hold the new
// entry only if it was appended before the walk read anything, and so
// after the old one was retired, which the walk then skips: a walk never
// passes a consumer twice, and passes every consumer that was registered
// before it started and is still registered when it ends.
//
// Lock order: a list's mutex is the innermost lock. A registration or a
// removal takes it under the key's bucket lock (and the spill's mutex, for
// a spilled key), after the group index's locks are released, and takes
// nothing else while it holds it.

// maxLists caps the number of walk lists. A walk copies every list's
// header before it reads any entry, into an array on its stack, so that
// Stats and PruneExpired allocate nothing; with more lists than the array
// holds it would allocate on every call, as a registry with the default
// four shards per P does on a machine of more than 16 cores, and a
// registry of WithShards(65536) would take 65536 locks to count nothing.
// A list's lock is held for an append, so 64 of them serve any core count.
const maxLists = 64

// listStripe is the log2 of the span of addresses that map to one list:
// 8 KiB, the runtime's page, from which it carves small objects of one
// size.
const listStripe = 13

// entryList is one dense list of entries, padded to cache lines so that
// registrations on different cores do not share one.
type entryList struct {
	listState
	_ [cacheLine - unsafe.Sizeof(listState{})%cacheLine]byte
}

// listState is an entryList without its padding.
type listState struct {
	mu sync.Mutex
	// es are the list's entries, retired ones included until the next
	// compaction; readers skip retired entries.
	es   []*entry.Entry
	live int // entries added and not dropped
	gone int // entries dropped since the last compaction
	// goneBytes is the size of the entries dropped since the last
	// compaction, their keys included (see retiredBytesPerSlot).
	goneBytes int64
}

// retiredBytesPerSlot bounds the memory that retired entries hold in a
// list: it is rebuilt once they take more than this many bytes per slot of
// its array, as well as once they outnumber the live entries. By count
// alone, a list of n small live entries would keep up to n retired ones
// whatever their size, and a client that registers and removes one
// consumer with a key of MaxKeyBytes over and over would make it hold n
// times 16 MiB. A rebuild costs the list's length, and comes after the
// removal of at least this many bytes per slot, which their registrations
// paid to copy: a removal still costs O(1) amortised per byte of its key.
// Entries of up to about twice this size are rebuilt away by count first,
// as before.
const retiredBytesPerSlot = 128

// listOf returns the list of entry e.
func (r *Registry) listOf(e *entry.Entry) *entryList {
	return &r.lists[uintptr(unsafe.Pointer(e))>>listStripe&uintptr(len(r.lists)-1)]
}

// add appends e, a new entry that is not yet visible in its shard's map.
func (l *entryList) add(e *entry.Entry) {
	l.mu.Lock()
	l.es = append(l.es, e)
	l.live++
	l.mu.Unlock()
}

// drop records that an entry of the list, of size bytes, was retired, and
// rebuilds the list without its retired entries once they outnumber the
// live ones or hold more than retiredBytesPerSlot bytes per slot: a
// rebuild costs the list's length and comes at most once per as many
// drops, so a removal costs O(1) amortised.
func (l *entryList) drop(size int) {
	l.mu.Lock()
	l.live--
	l.gone++
	l.goneBytes += int64(size)
	if l.gone > l.live || l.goneBytes > retiredBytesPerSlot*int64(len(l.es)) {
		l.es = compact(l.es, l.live, (*entry.Entry).Live)
		l.gone, l.goneBytes = 0, 0
	}
	l.mu.Unlock()
}

// entryBytes returns the size of the entry of key k: its header and its
// key's bytes.
func entryBytes(k *Key) int {
	return int(entry.Size) + len(k.Queue) + len(k.Group) + len(k.Consumer)
}

// view returns the list as it is now. The caller may read it without the
// lock, and must skip retired entries.
func (l *entryList) view() []*entry.Entry {
	l.mu.Lock()
	es := l.es
	l.mu.Unlock()
	return es
}

// walk calls f with the entries of every list, one list at a time, until
// f returns false: the one unordered loop over the whole registry. Its cost
// per consumer does not depend on how the consumers are grouped. It holds
// each list's lock only while it copies the slice header, so it never
// blocks a refresh or a registration for longer than that; it is weakly
// consistent like sync.Map.Range, and never passes a consumer twice (see
// above). Every entry is in one list once, retired ones included: callers
// skip those, and read the key with entryKey where they need it. Handing f
// a whole slice keeps the per-entry loop free of calls, so that the CPU can
// have many entries' cache misses in flight.
func (r *Registry) walk(f func(es []*entry.Entry) bool) {
	r.mustBeMade()
	var stack [maxLists][]*entry.Entry // the headers, on the stack
	views := stack[:0]
	for i := range r.lists {
		views = append(views, r.lists[i].view())
	}
	for _, es := range views {
		if !f(es) {
			return
		}
	}
}
