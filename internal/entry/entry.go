// Package entry is the per-consumer record shared by the registry and the
// benchmark's speed-of-light baseline: a pointer-free header of atomic words
// followed, in the same allocation, by the consumer's key bytes.
package entry

import (
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// Entry is the per-consumer state. Every field that a heartbeat writes is an
// atomic word of the entry's own; nothing is shared with other consumers.
//
// Times are int64 Unix nanoseconds rather than time.Time: 8 bytes instead of
// 24, no pointer (time.Time carries a *Location), and a single word that can
// be compared-and-swapped.
//
// hb doubles as the entry's liveness flag: nanotime.Retired, a value that no
// time converts to, marks an entry that has been removed (see registry.go).
type Entry struct {
	hb atomic.Int64 // last heartbeat, or nanotime.Retired
	// lw packs the lease count (low 32 bits) with a write sequence (high
	// 32 bits), so that a lease write that lost a race can be detected by
	// CAS; see Refresh.
	lw atomic.Uint64
	// active is the newest heartbeat that reported leases > 0, or
	// NoActive. It moves forwards only, like hb.
	active     atomic.Int64
	registered int64 // immutable after creation
	// Lengths of the key strings that follow the header.
	ql, gl, cl uint32
	// flags holds bits that readers and sweepers set (FlagStale); a
	// refresh never writes it.
	flags atomic.Uint32
}

// NoActive is the active time of an entry that never reported leases.
const NoActive = math.MinInt64

// Flag bits of an entry.
const (
	// FlagStale records that the last sweep saw the entry Stale, so that
	// the next one can tell a transition from a repeat.
	FlagStale uint32 = 1 << iota
)

// Size is the size of the header that precedes the key bytes.
const Size = unsafe.Sizeof(Entry{})

// MaxKeyBytes is the largest total length of a key's strings. The lengths
// are kept as uint32 in the entry header.
const MaxKeyBytes = math.MaxUint32

// New allocates an entry registered at now with the given lease count, and
// copies the key strings into the same block. The caller reads them back
// with Key: they point into the block, not into the arguments.
//
// The block is a []uint64, which the runtime allocates without pointers and
// 8-byte aligned on every platform, so the header's 64-bit atomics are
// aligned on 32-bit platforms too.
func New(queue, group, consumer string, now int64, leases uint32) *Entry {
	ql, gl, cl := len(queue), len(group), len(consumer)
	size := int(Size) + ql + gl + cl
	words := make([]uint64, (size+7)/8)
	base := unsafe.Pointer(unsafe.SliceData(words))
	e := (*Entry)(base)
	e.hb.Store(now)
	e.lw.Store(uint64(leases))
	e.active.Store(NoActive)
	if leases > 0 {
		e.active.Store(now)
	}
	e.registered = now
	e.ql, e.gl, e.cl = uint32(ql), uint32(gl), uint32(cl)

	if ql+gl+cl > 0 { // with no key bytes, base+Size is one past the block
		kb := unsafe.Slice((*byte)(unsafe.Add(base, Size)), ql+gl+cl)
		copy(kb, queue)
		copy(kb[ql:], group)
		copy(kb[ql+gl:], consumer)
	}
	return e
}

// Key returns the entry's key strings. Its strings are views of the entry's own
// block, which is never written after newEntry returns.
func (e *Entry) Key() (queue, group, consumer string) {
	return e.bytes(0, e.ql), e.bytes(e.ql, e.gl), e.bytes(e.ql+e.gl, e.cl)
}

// bytes returns n key bytes from offset off as a string. It forms no
// pointer for n == 0, which could point one past the block.
func (e *Entry) bytes(off, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), Size+uintptr(off))), n)
}

// Refresh records a heartbeat at now carrying leases. It reports false, and
// changes nothing, if the entry is retired; the caller then registers the
// consumer again.
//
// The heartbeat word only moves forwards: a beat older than the stored one
// is stale news and changes nothing. The lease count follows the beat with
// the newest time: after moving hb to now, a writer stores its leases only
// while hb still equals now, by a CAS on lw, whose sequence half changes on
// every write. A writer holding an older time that loses the race therefore
// fails its CAS, or sees hb moved on, and never overwrites newer leases.
func (e *Entry) Refresh(now int64, leases uint32) bool {
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
	if leases > 0 {
		// One more CAS, almost always on the first try: active <= hb < now.
		for {
			a := e.active.Load()
			if now <= a || e.active.CompareAndSwap(a, now) {
				break
			}
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

// RetireIf marks the entry removed if its heartbeat still equals seen, and
// reports whether it did. A concurrent refresh that moved hb makes it fail.
func (e *Entry) RetireIf(seen int64) bool {
	return seen != nanotime.Retired && e.hb.CompareAndSwap(seen, nanotime.Retired)
}

// Retire marks the entry removed whatever its heartbeat, and reports
// whether this call did it (false: it was already retired).
func (e *Entry) Retire() bool {
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

func (e *Entry) Leases() uint32 { return uint32(e.lw.Load()) }

// HB returns the last heartbeat in Unix nanoseconds, or nanotime.Retired.
func (e *Entry) HB() int64 { return e.hb.Load() }

// Registered returns the registration time in Unix nanoseconds.
func (e *Entry) Registered() int64 { return e.registered }

// Active returns the newest heartbeat with leases > 0, or NoActive.
func (e *Entry) Active() int64 { return e.active.Load() }

// Flags returns the entry's flag bits.
func (e *Entry) Flags() uint32 { return e.flags.Load() }

// SetFlag sets or clears bit f and reports whether this call changed it.
func (e *Entry) SetFlag(f uint32, on bool) bool {
	for {
		old := e.flags.Load()
		next := old &^ f
		if on {
			next = old | f
		}
		if next == old {
			return false
		}
		if e.flags.CompareAndSwap(old, next) {
			return true
		}
	}
}

// Live reports whether the entry has not been retired.
func (e *Entry) Live() bool { return e.hb.Load() != nanotime.Retired }
