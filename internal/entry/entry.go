// Package entry is the per-consumer record shared by the registry and the
// benchmark's speed-of-light baseline: a pointer-free header of atomic words
// followed, in the same allocation, by the consumer's key bytes.
package entry

import (
	"encoding/binary"
	"math"
	"runtime"
	"sync/atomic"
	"time"
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
// hb doubles as the entry's liveness flag: nanotime.None, a value that no
// time converts to, marks an entry that has been removed (see registry.go).
type Entry struct {
	hb atomic.Int64 // last heartbeat, or nanotime.None
	// lw packs the lease count (low 32 bits) with the tag of the heartbeat
	// time it belongs to (high 32 bits, see tagOf), so that a reader can
	// tell whether the lease count is that of the heartbeat it read, and a
	// lease write that lost a race fails its CAS; see Refresh and Load.
	lw atomic.Uint64
	// flags holds bits that readers and sweepers set (FlagStale); a
	// refresh never writes it.
	flags atomic.Uint32
	// ttl is the heartbeat budget the consumer declared, in TTLUnits, or 0
	// if it declared none (it is then judged by the TTL of each read). A
	// beat that declares one writes it only when it differs (SetTTL), so a
	// steady heartbeat that re-declares the same budget only loads it.
	// flags and ttl share one 8-byte word, so an entry is 4 bytes larger
	// than without ttl, not 8.
	ttl atomic.Uint32
	// The four words above are all that a refresh touches, and hb, flags
	// and ttl all that a sweep reads: the first 24 bytes, which lie in one
	// cache line for three in four of the 16-byte-aligned places an entry
	// can start at (with active and registered between them, one in two).

	// active is the time of the newest heartbeat that reported leases > 0
	// as of the last time the lease count dropped to 0, or nanotime.None. While
	// the lease count is above 0 the newest such heartbeat is hb itself, so
	// a refresh writes active only on a drop from leases > 0 to 0: a
	// steady heartbeat, with or without leases, never pays for it. See
	// Active.
	active     atomic.Int64
	registered atomic.Int64 // moves only backwards, when a checkpoint is merged
	// The key follows from keyOff: the lengths of queue, group and
	// consumer as uvarints (one byte each for names under 128 bytes), then
	// their bytes.
}

// Flag bits of an entry.
const (
	// FlagStale records that the last sweep saw the entry Stale, so that
	// the next one can tell a transition from a repeat.
	FlagStale uint32 = 1 << iota
	// FlagDirty records that the entry changed since a mirror last
	// collected it. New entries start dirty; every refresh that changes the
	// entry sets it, which costs one atomic load once it is set.
	FlagDirty
)

// Size is the size of the Entry struct. The key starts at keyOff, right
// after its last field.
const Size = unsafe.Sizeof(Entry{})

const keyOff = unsafe.Offsetof(Entry{}.registered) + 8

// TTLUnit is the unit of a declared TTL: an entry keeps it as a uint32
// count of milliseconds, so the largest is MaxTTL, about 49.7 days.
const TTLUnit = time.Millisecond

// MaxTTL is the largest declared TTL an entry can hold.
const MaxTTL = math.MaxUint32 * TTLUnit

// MaxKeyBytes is the largest total length of a key's strings: 16 MiB, a
// block that every platform can allocate (a 32-bit one included) and that
// fits in one checkpoint block with room to spare.
const MaxKeyBytes = 16 << 20

// New allocates an entry registered at now with the given lease count, and
// copies the key strings into the same block. The caller reads them back
// with Key: they point into the block, not into the arguments.
//
// The block is a []uint64, which the runtime allocates without pointers and
// 8-byte aligned on every platform, so the header's 64-bit atomics are
// aligned on 32-bit platforms too.
func New(queue, group, consumer string, now int64, leases uint32) *Entry {
	ql, gl, cl := len(queue), len(group), len(consumer)
	var lens [3 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lens[:], uint64(ql))
	n += binary.PutUvarint(lens[n:], uint64(gl))
	n += binary.PutUvarint(lens[n:], uint64(cl))
	size := max(int(keyOff)+n+ql+gl+cl, int(Size))
	words := make([]uint64, (size+7)/8)
	base := unsafe.Pointer(unsafe.SliceData(words))
	e := (*Entry)(base)
	e.hb.Store(now)
	e.lw.Store(tagOf(now) | uint64(leases))
	e.active.Store(nanotime.None)
	e.registered.Store(now)
	e.flags.Store(FlagDirty)

	kb := unsafe.Slice((*byte)(unsafe.Add(base, keyOff)), n+ql+gl+cl)
	i := copy(kb, lens[:n])
	i += copy(kb[i:], queue)
	i += copy(kb[i:], group)
	copy(kb[i:], consumer)
	return e
}

// Key returns the entry's key strings. They are views of the entry's own
// block, which is never written after New returns.
func (e *Entry) Key() (queue, group, consumer string) {
	off := keyOff
	ql := e.uvarint(&off)
	gl := e.uvarint(&off)
	cl := e.uvarint(&off)
	queue = e.bytes(off, ql)
	group = e.bytes(off+ql, gl)
	consumer = e.bytes(off+ql+gl, cl)
	return
}

// KeyIs reports whether the entry's key strings are queue, group and
// consumer. It is Key followed by three compares, with a fast path for
// names shorter than 128 bytes, whose lengths are one byte each.
func (e *Entry) KeyIs(queue, group, consumer string) bool {
	p := unsafe.Add(unsafe.Pointer(e), keyOff)
	ql, gl, cl := *(*byte)(p), *(*byte)(unsafe.Add(p, 1)), *(*byte)(unsafe.Add(p, 2))
	if (ql|gl|cl)&0x80 != 0 {
		q, g, c := e.Key()
		return c == consumer && g == group && q == queue
	}
	off := keyOff + 3 // each string compare checks its length first
	return e.bytes(off+uintptr(ql)+uintptr(gl), uintptr(cl)) == consumer &&
		e.bytes(off+uintptr(ql), uintptr(gl)) == group &&
		e.bytes(off, uintptr(ql)) == queue
}

// uvarint decodes the uvarint at *off and moves *off past it.
func (e *Entry) uvarint(off *uintptr) uintptr {
	var v uintptr
	for shift := 0; ; shift += 7 {
		b := *(*byte)(unsafe.Add(unsafe.Pointer(e), *off))
		*off++
		v |= uintptr(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
	}
}

// bytes returns n key bytes from offset off as a string. It forms no
// pointer for n == 0, which could point one past the block.
func (e *Entry) bytes(off, n uintptr) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), off)), n)
}

// tagOf returns the tag of heartbeat time hb, in the high half of a lease
// word: the top 32 bits of hb times an odd constant. Two times whose tags are
// equal are rare, whatever the structure of the times (whole seconds, or
// times 2^32 ns apart).
func tagOf(hb int64) uint64 {
	return uint64(hb) * 0x9e3779b97f4a7c15 >> 32 << 32
}

// Outcome is what Beat did.
type Outcome uint8

const (
	// Retired: the entry is retired; nothing changed.
	Retired Outcome = iota
	// Recorded: the beat was recorded, or was stale news (older than the
	// stored one by at most the step) and changed nothing.
	Recorded
	// Corrected: the beat was older than the stored one by more than the
	// step, and replaced it as the correction of a clock error.
	Corrected
)

// Beat is BeatTTL declaring no TTL: the entry keeps the one it has.
func (e *Entry) Beat(now int64, leases uint32, step uint64) Outcome {
	return e.BeatTTL(now, leases, 0, step)
}

// Refresh is Beat with no clock step: an older beat never replaces a newer
// one. It reports false, and changes nothing, if the entry is retired.
func (e *Entry) Refresh(now int64, leases uint32) bool {
	return e.Beat(now, leases, math.MaxUint64) != Retired
}

// BeatTTL records a heartbeat at now carrying leases and, if ttl is not 0,
// the heartbeat budget the consumer declares, in TTLUnits. It returns Retired, and
// changes nothing, if the entry is retired; the caller then registers the
// consumer again.
//
// The heartbeat word moves forwards: a beat older than the stored one by at
// most step is stale news and changes nothing. One older by more than step
// is taken as the correction of a clock error (the stored time came from a
// clock that was ahead): it replaces the stored time, and clamps the
// registration and active times to it (Corrected).
//
// The lease count follows the beat with the newest time: after moving hb to
// now, a writer stores its leases, tagged with now, by a CAS on lw while hb
// still equals now. A writer holding an older time that loses the race
// therefore fails its CAS (the newer writer changed the tag), or sees hb
// moved on, and never overwrites newer leases. Between the two writes the
// lease word carries the tag of another time, which tells a reader (Load)
// that the beat at hb is still being written.
//
// A declared ttl is stored by a beat that is recorded (not stale news),
// before its lease count, so that a reader whose Load sees this beat's
// lease word sees its TTL too. When beats that declare different budgets
// race, the entry ends with one of them.
func (e *Entry) BeatTTL(now int64, leases uint32, ttl uint32, step uint64) Outcome {
	var old int64
	out := Recorded
	for {
		old = e.hb.Load()
		if old == nanotime.None {
			return Retired
		}
		if now < old {
			if uint64(old)-uint64(now) <= step { // exact: old > now
				return Recorded
			}
			if e.hb.CompareAndSwap(old, now) {
				out = Corrected
				keepMin(&e.registered, now)
				keepMin(&e.active, now)
				break
			}
			continue
		}
		if now == old || e.hb.CompareAndSwap(old, now) {
			break
		}
	}
	if ttl != 0 {
		e.SetTTL(ttl)
	}
	afterTimeCAS()
	next := tagOf(now) | uint64(leases)
	for {
		w := e.lw.Load()
		if e.hb.Load() != now {
			// A newer beat owns the lease count, or the entry was retired
			// after this beat landed; either way this beat is recorded.
			e.markDirty()
			return out
		}
		if e.lw.CompareAndSwap(w, next) {
			if leases == 0 && uint32(w) > 0 {
				// Work stopped: the beat this one replaced, at old, was
				// the last with leases. Remember it (no later than now,
				// if old was a time from the future).
				e.keepActive(min(old, now))
			}
			e.markDirty()
			return out
		}
	}
}

// keepMin moves w backwards to t, if t is earlier. nanotime.None, the
// smallest int64, is never moved.
func keepMin(w *atomic.Int64, t int64) {
	for {
		v := w.Load()
		if v <= t || w.CompareAndSwap(v, t) {
			return
		}
	}
}

// RetireIf marks the entry removed if its heartbeat still equals seen, and
// reports whether it did. A concurrent refresh that moved hb makes it fail.
func (e *Entry) RetireIf(seen int64) bool {
	if seen != nanotime.None && e.hb.CompareAndSwap(seen, nanotime.None) {
		afterRetire()
		return true
	}
	return false
}

// Retire marks the entry removed whatever its heartbeat, and reports
// whether this call did it (false: it was already retired).
func (e *Entry) Retire() bool {
	beforeRetire()
	for {
		hb := e.hb.Load()
		if hb == nanotime.None {
			return false
		}
		if e.hb.CompareAndSwap(hb, nanotime.None) {
			afterRetire()
			return true
		}
	}
}

// State is one consistent reading of a live entry: the times and the lease
// count of one moment, with Registered <= HB, Active <= HB (or
// nanotime.None), and Leases the count reported by the beat at HB.
type State struct {
	Registered, HB, Active int64
	// TTL is the declared heartbeat budget, 0 for none: that of the beat
	// at HB or of a newer one.
	TTL    time.Duration
	Leases uint32
}

// loadPatience bounds how long Load waits for a beat in flight before it
// settles for the times alone; see Load.
const loadPatience = 250 * time.Millisecond

// Load returns the entry's current state, or false if it is retired. It
// takes no lock and never makes a writer wait: it reads hb, the lease word,
// active and registered, then hb again, and retries while hb moved or the
// lease word carries the tag of another time, which happens while a beat is
// between its two writes. That lasts a few instructions, unless the beat's
// thread is descheduled there, so Load spins a little, then yields the
// processor, then sleeps, for up to loadPatience in all.
//
// Active and Registered are clamped to HB, so the times are in order even if
// Load gives up waiting. It only does after loadPatience, for a writer
// stalled that long (or an ABA of clock corrections that brings hb back to
// a time it held, which leaves nobody to write the lease word); the lease
// count may then be that of an earlier beat.
func (e *Entry) Load() (State, bool) {
	var waited time.Duration
	for i := 0; ; i++ {
		hb := e.hb.Load()
		if hb == nanotime.None {
			return State{}, false
		}
		w := e.lw.Load()
		active := e.active.Load()
		registered := e.registered.Load()
		ttl := e.TTL()
		again := e.hb.Load()
		if again == nanotime.None {
			return State{}, false // retired meanwhile
		}
		if (again != hb || w&^(1<<32-1) != tagOf(hb)) && waited < loadPatience {
			switch {
			case i < 16:
			case i < 1024:
				runtime.Gosched()
			default:
				d := time.Duration(min(i-1023, 1000)) * time.Microsecond
				time.Sleep(d)
				waited += d
			}
			continue
		}
		st := State{Registered: min(registered, hb), HB: hb, Active: min(active, hb), TTL: ttl, Leases: uint32(w)}
		if st.Leases > 0 {
			// The newest beat with leases is the one at hb.
			st.Active = hb
		}
		return st, true
	}
}

// TTL returns the declared heartbeat budget, 0 if none.
func (e *Entry) TTL() time.Duration { return time.Duration(e.ttl.Load()) * TTLUnit }

// SetTTL declares heartbeat budget ttl (TTLUnits, 0 for none) and reports
// whether it changed it. It writes only when the value differs, so that
// re-declaring the same budget costs one load.
func (e *Entry) SetTTL(ttl uint32) bool {
	if e.ttl.Load() == ttl {
		return false
	}
	e.ttl.Store(ttl)
	return true
}

// Leases returns the lease count of the last recorded beat.
func (e *Entry) Leases() uint32 { return uint32(e.lw.Load()) }

// HB returns the last heartbeat in Unix nanoseconds, or nanotime.None.
func (e *Entry) HB() int64 { return e.hb.Load() }

// Registered returns the registration time in Unix nanoseconds.
func (e *Entry) Registered() int64 { return e.registered.Load() }

// Active returns the time of the newest heartbeat with leases > 0, or
// nanotime.None: hb while the current lease count is above 0, else the time kept
// when it dropped to 0. When beats of one consumer race, it reflects the
// beats whose lease counts were recorded. It is Load's Active, and
// nanotime.None for a retired entry.
func (e *Entry) Active() int64 {
	st, ok := e.Load()
	if !ok {
		return nanotime.None
	}
	return st.Active
}

// markDirty sets FlagDirty after the entry's values are written, so that a
// collector that clears the flag before reading the values never misses a
// change.
func (e *Entry) markDirty() {
	if e.flags.Load()&FlagDirty == 0 {
		e.flags.Or(FlagDirty)
	}
}

// ActiveTime is Active as a UTC time, the zero Time for nanotime.None.
func (e *Entry) ActiveTime() time.Time { return TimeOrZero(e.Active()) }

// TimeOrZero converts ns to a UTC time, and nanotime.None to the zero Time.
func TimeOrZero(ns int64) time.Time {
	if ns != nanotime.None {
		return nanotime.ToTime(ns)
	}
	return time.Time{}
}

// keepActive moves active forwards to t.
func (e *Entry) keepActive(t int64) {
	for {
		a := e.active.Load()
		if t <= a || e.active.CompareAndSwap(a, t) {
			return
		}
	}
}

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
func (e *Entry) Live() bool { return e.hb.Load() != nanotime.None }

// Restore allocates an entry with the times of a checkpoint record, declaring
// no TTL.
func Restore(queue, group, consumer string, registered, hb, active int64, leases uint32) *Entry {
	return RestoreTTL(queue, group, consumer, registered, hb, active, leases, 0)
}

// RestoreTTL is Restore with the record's declared TTL (TTLUnits, 0 for
// none).
func RestoreTTL(queue, group, consumer string, registered, hb, active int64, leases uint32, ttl uint32) *Entry {
	e := New(queue, group, consumer, hb, leases)
	e.registered.Store(registered)
	e.active.Store(active)
	e.ttl.Store(ttl)
	return e
}

// Merge folds a checkpoint record into a live entry without moving it
// backwards: the later heartbeat (with its leases), the later active time
// and the earlier registration win. It reports false, changing nothing, if
// the entry is retired. It declares no TTL: the entry keeps its own.
func (e *Entry) Merge(registered, hb, active int64, leases uint32) bool {
	return e.MergeTTL(registered, hb, active, leases, 0)
}

// MergeTTL is Merge for a record that declares ttl (TTLUnits, 0 for none). The
// declaration travels with its heartbeat: it replaces the entry's unless the
// entry's heartbeat is newer.
func (e *Entry) MergeTTL(registered, hb, active int64, leases uint32, ttl uint32) bool {
	if e.BeatTTL(hb, leases, ttl, math.MaxUint64) == Retired {
		return false
	}
	e.keepActive(active)
	keepMin(&e.registered, registered)
	e.markDirty()
	return true
}
