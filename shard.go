package presence

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
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
