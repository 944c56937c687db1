package presence

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
)

// Layout
//
// A Registry is a power-of-two array of shards. Each shard is an xsync.MapOf
// from mkey to *entry.Entry plus a padded counter of its live entries. A key
// is hashed once (hashKey: each string with hash/maphash under a random
// per-registry seed); the top bits of that hash pick the shard and the whole
// hash is handed to the shard's MapOf as the key's hash, so the strings are
// never hashed twice.
//
// An entry and the bytes of its key live in one noscan allocation (see
// internal/entry): a 40-byte header of atomic words, then the three key
// lengths as uvarints, then the queue, group and consumer bytes. The block
// holds no pointers, so the garbage collector never scans it, and the three
// key strings in the map are views into it. Registering a consumer therefore
// allocates that block and the MapOf's own immutable entry, and nothing
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

// mkey is the key of a shard's map. h is the key's hashKey, stored so that
// MapOf never hashes the strings again, and compared first so that most
// mismatches cost one integer compare.
type mkey struct {
	h uint64
	k Key
}

// hashMkey is the MapOf hasher: the hash was computed once, up front. The
// table seed is ignored because the registry's own seed is already mixed in.
func hashMkey(k mkey, _ uint64) uint64 { return k.h }

// shard is one of a registry's maps. live counts the entries that are in the
// map and not retired; only registration and removal write it, never a
// refresh. The padding keeps two shards' counters off one cache line.
type shard struct {
	m    *xsync.MapOf[mkey, *entry.Entry]
	live atomic.Int64
	_    [cacheLine - unsafe.Sizeof(uintptr(0)) - 8]byte
}

func newShard(sizeHint int) shard {
	opts := []func(*xsync.MapConfig){}
	if sizeHint > 0 {
		opts = append(opts, xsync.WithPresize(sizeHint))
	}
	return shard{m: xsync.NewMapOfWithHasher[mkey, *entry.Entry](hashMkey, opts...)}
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
func hashKey(seed maphash.Seed, k *Key) uint64 {
	const mul = 0x9e3779b185ebca87 // 2^64 / golden ratio, odd
	h := maphash.String(seed, k.Queue)
	h = (h^h>>29)*mul ^ maphash.String(seed, k.Group)
	h = (h^h>>29)*mul ^ maphash.String(seed, k.Consumer)
	return h
}

// newEntry allocates the entry for k (see entry.New) and returns it with its
// map key, whose strings are the entry's own copies, not k's.
func newEntry(h uint64, k *Key, now int64, leases uint32) (*entry.Entry, mkey) {
	e := entry.New(k.Queue, k.Group, k.Consumer, now, leases)
	return e, mkey{h: h, k: entryKey(e)}
}

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
	sl.h = hashKey(r.seed, k)
	sl.s = r.shardOf(sl.h)
	sl.e, ok = sl.s.m.Load(mkey{h: sl.h, k: *k})
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
