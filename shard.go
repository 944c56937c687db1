package presence

import (
	"encoding/binary"
	"math"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// Layout
//
// A Registry is a power-of-two array of shards. Each shard is an xsync.MapOf
// from mkey to *entry plus a padded counter of its live entries. A key is
// hashed once, with xxhash over a per-registry seed and a length-prefixed
// encoding of its three strings; the top bits of that hash pick the shard
// and the whole hash is handed to the shard's MapOf as the key's hash, so the
// strings are never hashed twice.
//
// An entry and the bytes of its key live in one noscan allocation: the
// fixed-size entry header, then the queue, group and consumer bytes. The
// header holds no pointers, so the garbage collector never scans it, and the
// three key strings in the map are views into the same block. Registering a
// consumer therefore allocates that block and the MapOf's own immutable
// entry, and nothing else.

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

// mkey is the key of a shard's map. h is the key's xxhash, stored so that
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
	m    *xsync.MapOf[mkey, *entry]
	live atomic.Int64
	_    [cacheLine - unsafe.Sizeof(uintptr(0)) - 8]byte
}

func newShard(sizeHint int) shard {
	opts := []func(*xsync.MapConfig){}
	if sizeHint > 0 {
		opts = append(opts, xsync.WithPresize(sizeHint))
	}
	return shard{m: xsync.NewMapOfWithHasher[mkey, *entry](hashMkey, opts...)}
}

// hashBufLen is the largest encoded key hashed from a stack buffer; longer
// keys stream through an xxhash.Digest and give the same hash.
const hashBufLen = 128

// hashKey returns the xxhash of seed followed by the injective encoding
//
//	len(Queue) as 8 bytes LE | Queue | len(Group) as 8 bytes LE | Group | Consumer
//
// The lengths make {"a\x00b","c",""} and {"a","b\x00c",""} different keys
// whatever bytes the strings contain; the consumer's length is implied by the
// total, which xxhash mixes in.
func hashKey(seed uint64, k *Key) uint64 {
	n := 24 + len(k.Queue) + len(k.Group) + len(k.Consumer)
	if n <= hashBufLen {
		var buf [hashBufLen]byte
		binary.LittleEndian.PutUint64(buf[0:], seed)
		binary.LittleEndian.PutUint64(buf[8:], uint64(len(k.Queue)))
		i := 16 + copy(buf[16:], k.Queue)
		binary.LittleEndian.PutUint64(buf[i:], uint64(len(k.Group)))
		i += 8
		i += copy(buf[i:], k.Group)
		i += copy(buf[i:], k.Consumer)
		return xxhash.Sum64(buf[:i])
	}
	var d xxhash.Digest
	d.Reset()
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], seed)
	d.Write(w[:])
	binary.LittleEndian.PutUint64(w[:], uint64(len(k.Queue)))
	d.Write(w[:])
	d.WriteString(k.Queue)
	binary.LittleEndian.PutUint64(w[:], uint64(len(k.Group)))
	d.Write(w[:])
	d.WriteString(k.Group)
	d.WriteString(k.Consumer)
	return d.Sum64()
}

// entry is the per-consumer state. Every field that a heartbeat writes is an
// atomic word of the entry's own; nothing is shared with other consumers.
//
// Times are int64 Unix nanoseconds rather than time.Time: 8 bytes instead of
// 24, no pointer (time.Time carries a *Location), and a single word that can
// be compared-and-swapped.
//
// hb doubles as the entry's liveness flag: nanotime.Retired, a value that no
// time converts to, marks an entry that has been removed (see registry.go).
type entry struct {
	hb atomic.Int64 // last heartbeat, or nanotime.Retired
	// lw packs the lease count (low 32 bits) with a write sequence (high
	// 32 bits), so that a lease write that lost a race can be detected by
	// CAS; see refresh.
	lw         atomic.Uint64
	registered int64 // immutable after creation
	// Lengths of the key strings that follow the header.
	ql, gl, cl uint32
	_          uint32
}

const entrySize = unsafe.Sizeof(entry{})

// maxKeyBytes is the largest total length of a key's strings. The lengths
// are kept as uint32 in the entry header.
const maxKeyBytes = math.MaxUint32

// newEntry allocates an entry for k, registered at now with the given lease
// count, and copies k's strings into the same block. It returns the entry and
// the map key, whose strings point into the block and not into k.
//
// The block is a []uint64, which the runtime allocates without pointers and
// 8-byte aligned on every platform, so the header's 64-bit atomics are
// aligned on 32-bit platforms too.
func newEntry(h uint64, k *Key, now int64, leases uint32) (*entry, mkey) {
	ql, gl, cl := len(k.Queue), len(k.Group), len(k.Consumer)
	size := int(entrySize) + ql + gl + cl
	words := make([]uint64, (size+7)/8)
	base := unsafe.Pointer(unsafe.SliceData(words))
	e := (*entry)(base)
	e.hb.Store(now)
	e.lw.Store(uint64(leases))
	e.registered = now
	e.ql, e.gl, e.cl = uint32(ql), uint32(gl), uint32(cl)

	kb := unsafe.Slice((*byte)(unsafe.Add(base, entrySize)), ql+gl+cl)
	copy(kb, k.Queue)
	copy(kb[ql:], k.Group)
	copy(kb[ql+gl:], k.Consumer)
	return e, mkey{h: h, k: e.key()}
}

// key returns the entry's key. Its strings are views of the entry's own
// block, which is never written after newEntry returns.
func (e *entry) key() Key {
	kb := unsafe.Add(unsafe.Pointer(e), entrySize)
	return Key{
		Queue:    bytesString(kb, 0, e.ql),
		Group:    bytesString(kb, e.ql, e.gl),
		Consumer: bytesString(kb, e.ql+e.gl, e.cl),
	}
}

func bytesString(base unsafe.Pointer, off, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(base, off)), n)
}

// refresh records a heartbeat at now carrying leases. It reports false, and
// changes nothing, if the entry is retired; the caller then registers the
// consumer again.
//
// The heartbeat word only moves forwards: a beat older than the stored one
// is stale news and changes nothing. The lease count follows the beat with
// the newest time: after moving hb to now, a writer stores its leases only
// while hb still equals now, by a CAS on lw, whose sequence half changes on
// every write. A writer holding an older time that loses the race therefore
// fails its CAS, or sees hb moved on, and never overwrites newer leases.
func (e *entry) refresh(now int64, leases uint32) bool {
	for {
		old := e.hb.Load()
		if old == nanotime.Retired {
			return false
		}
		if now < old {
			return true
		}
		if now == old || e.hb.CompareAndSwap(old, now) {
			break
		}
	}
	afterTimeCAS()
	for {
		w := e.lw.Load()
		if e.hb.Load() != now {
			// A newer beat owns the lease count, or the entry was retired
			// after this beat landed; either way this beat is recorded.
			return true
		}
		next := (w>>32+1)<<32 | uint64(leases)
		if e.lw.CompareAndSwap(w, next) {
			return true
		}
	}
}

// retire marks the entry removed if its heartbeat still equals seen, and
// reports whether it did. A concurrent refresh that moved hb makes it fail.
func (e *entry) retireIf(seen int64) bool {
	return seen != nanotime.Retired && e.hb.CompareAndSwap(seen, nanotime.Retired)
}

// retire marks the entry removed whatever its heartbeat, and reports
// whether this call did it (false: it was already retired).
func (e *entry) retire() bool {
	for {
		hb := e.hb.Load()
		if hb == nanotime.Retired {
			return false
		}
		if e.hb.CompareAndSwap(hb, nanotime.Retired) {
			return true
		}
	}
}

func (e *entry) leases() uint32 { return uint32(e.lw.Load()) }
