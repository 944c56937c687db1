package presence

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
)

// Layout
//
// A Registry is a power-of-two array of shards. Each shard is an xsync.MapOf
// from a key's hash to its *entry.Entry, plus a padded counter of its live
// entries and a spill for keys whose hash another key already holds (see
// shardState). A key is hashed once (hashKey: each string with hash/maphash
// under a random per-registry seed); the top bits of that hash pick the
// shard and the whole hash is the shard map's key, so the strings are never
// hashed twice, and the map holds no strings.
//
// An entry and the bytes of its key live in one noscan allocation (see
// internal/entry): a 40-byte header of atomic words, then the three key
// lengths as uvarints, then the queue, group and consumer bytes. The block
// holds no pointers, so the garbage collector never scans it, and the key
// strings a read returns are views into it. Registering a consumer therefore
// allocates that block and the MapOf's own 16-byte entry, and nothing
// else. The group index (index.go) allocates only when a group or queue is
// first seen.

const (
	maxShards = 1 << 16
	// cacheLine is the padding unit for counters written by registrations
	// on different cores.
	cacheLine = 64
)

// defaultShards returns the shard count used when WithShards is not given:
// four shards per P, so that registrations and map growth on different cores
// rarely meet in one shard.
func defaultShards() int {
	return roundShards(4 * runtime.GOMAXPROCS(0))
}

// roundShards rounds n up to a power of two in [1, maxShards].
func roundShards(n int) int {
	switch {
	case n <= 1:
		return 1
	case n >= maxShards:
		return maxShards
	}
	return 1 << bits.Len(uint(n-1))
}

// mkey is a key with its hashKey: what a shard is asked for.
type mkey struct {
	h uint64
	k Key
}

// shard is one of a registry's maps. live counts the entries that are in the
// map and not retired; only registration and removal write it, never a
// refresh. The padding keeps two shards' counters off one cache line.
type shard struct {
	shardState
	_ [cacheLine - unsafe.Sizeof(shardState{})%cacheLine]byte
}

// shardState is a shard without its padding.
//
// The map is keyed by the 64-bit hash alone, so that a map entry holds no
// strings: 16 bytes where a (hash, Key) key took 64, and a lookup compares
// one word in the map, then the key bytes in the entry it was going to
// touch anyway. Two keys whose hashes are equal (about one pair in 2^64
// under the random seed, and none that an attacker can aim for) cannot
// share the map's slot: the one that finds its hash taken goes to the
// spill, a plain map under a mutex. spilled counts the spill's entries, so
// that while it is empty, which it nearly always is, a miss costs no lock.
type shardState struct {
	m       *xsync.MapOf[uint64, *entry.Entry]
	live    atomic.Int64
	spilled atomic.Int64
	spillMu sync.Mutex
	spill   map[Key]*entry.Entry // keys are the entries' own strings
}

func (s *shard) init(sizeHint int) {
	opts := []func(*xsync.MapConfig){}
	if sizeHint > 0 {
		opts = append(opts, xsync.WithPresize(sizeHint))
	}
	s.m = xsync.NewMapOfWithHasher[uint64, *entry.Entry](hashSelf, opts...)
}

// hashSelf is the MapOf hasher: the key is already a seeded hash. The
// table's seed is ignored because the registry's own seed is already mixed
// in.
func hashSelf(h, _ uint64) uint64 { return h }

// load returns the entry of mk's key, which may be retired, without taking
// a lock unless the spill holds entries.
func (s *shard) load(mk *mkey) (*entry.Entry, bool) {
	if e, ok := s.m.Load(mk.h); ok && sameKey(e, &mk.k) {
		return e, true
	}
	if s.spilled.Load() == 0 {
		return nil, false
	}
	s.spillMu.Lock()
	e, ok := s.spill[mk.k]
	s.spillMu.Unlock()
	return e, ok
}

// compute runs f on the entry of mk's key under the key's bucket lock, with
// the semantics of xsync.MapOf.Compute: f returns the entry to keep, or
// true to delete. Every key with the same hash takes the same bucket lock,
// so a key's computes are serialized whether its entry is in the map or in
// the spill.
func (s *shard) compute(mk *mkey, f func(cur *entry.Entry, loaded bool) (*entry.Entry, bool)) {
	s.m.Compute(mk.h, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		switch {
		case loaded && sameKey(cur, &mk.k):
			return f(cur, true)
		case loaded || s.spilled.Load() > 0:
			if s.computeSpill(mk, f, loaded) {
				return cur, !loaded // the map's slot is as it was
			}
		}
		return f(nil, false)
	})
}

// computeSpill runs f on mk's entry in the spill, and reports whether it
// did: it does unless the key is absent from the spill and the map's slot
// for its hash is free (taken false), where the key belongs instead. The
// bucket lock of mk's hash is held.
func (s *shard) computeSpill(mk *mkey, f func(cur *entry.Entry, loaded bool) (*entry.Entry, bool), taken bool) bool {
	s.spillMu.Lock()
	defer s.spillMu.Unlock()
	cur, ok := s.spill[mk.k]
	if !ok && !taken {
		return false
	}
	next, del := f(cur, ok)
	switch {
	case del && ok:
		delete(s.spill, mk.k)
		s.spilled.Add(-1)
	case !del:
		if s.spill == nil {
			s.spill = map[Key]*entry.Entry{}
		}
		if !ok {
			s.spilled.Add(1)
		}
		s.spill[entryKey(next)] = next
	}
	return true
}

// sameKey reports whether e is the entry of key k.
func sameKey(e *entry.Entry, k *Key) bool {
	return e.KeyIs(k.Queue, k.Group, k.Consumer)
}

// hashKey returns the key's hash under the registry's seed: each string
// hashed on its own with hash/maphash (the runtime's seeded hash, AES-based
// where the CPU has it), chained with a multiply-xorshift step (a bijection
// of the running hash, so the order of the strings matters and no two of
// them can cancel). Hashing the strings separately keeps them apart whatever
// bytes they hold ({"a\x00b","c",""} and {"a","b\x00c",""} differ in their
// components) and costs no copy into a buffer.
//
// The seed is random per registry and enters the hash of every byte, so
// names crafted offline cannot be made to collide in a running registry (a
// seed folded in after an unseeded hash would keep every collision of that
// hash). The hash is therefore not stable across processes: nothing
// persisted or shared may depend on it (presenceredis tags its keys with its
// own xxhash).
//
// Its first two steps are the group index's hash of the key's group
// (index.hashes).
func hashKey(seed maphash.Seed, k *Key) uint64 {
	h := maphash.String(seed, k.Queue)
	h = chainHash(h) ^ maphash.String(seed, k.Group)
	h = chainHash(h) ^ maphash.String(seed, k.Consumer)
	return h
}

// chainHash is the step between two strings' hashes in hashKey.
func chainHash(h uint64) uint64 {
	const mul = 0x9e3779b185ebca87 // 2^64 / golden ratio, odd
	return (h ^ h>>29) * mul
}

// newEntry allocates the entry for k (see entry.New) and returns it with its
// key, whose strings are the entry's own copies, not k's.
func newEntry(h uint64, k *Key, now int64, leases uint32) (*entry.Entry, mkey) {
	e := entry.New(k.Queue, k.Group, k.Consumer, now, leases)
	return e, mkey{h: h, k: entryKey(e)}
}

// hash returns k's hash in r: hashKey under r's seed, with the bits that
// tests clear to make keys collide (WithHashMask) cleared.
func (r *Registry) hash(k *Key) uint64 { return hashKey(r.seed, k) & r.hmask }

func entryKey(e *entry.Entry) Key {
	q, g, c := e.Key()
	return Key{Queue: q, Group: g, Consumer: c}
}

// slot is where a key lives: its hash, its shard, and the entry the shard
// holds for it, if any (it may be retired).
type slot struct {
	h uint64
	s *shard
	e *entry.Entry
}

// lookup hashes k once, picks its shard and loads its entry: the one place
// a key is turned into a shard and an entry. It takes no lock.
func (r *Registry) lookup(k *Key) (sl slot, ok bool) {
	r.mustBeMade()
	sl.h = r.hash(k)
	sl.s = r.shardOf(sl.h)
	sl.e, ok = sl.s.load(&mkey{h: sl.h, k: *k})
	return sl, ok
}

// errNotMade is the panic of a Registry that New did not make.
const errNotMade = "presence: Registry used without New (the zero Registry is not usable)"

// mustBeMade panics with errNotMade on a zero Registry, whose methods would
// otherwise fail with an index out of range or a nil dereference somewhere
// inside. Every way in passes through it, or through lookup or walk.
func (r *Registry) mustBeMade() {
	if r.shards == nil {
		panic(errNotMade)
	}
}
