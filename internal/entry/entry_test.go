package entry

import (
	"testing"
	"time"
	"unsafe"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// The header is five words on every platform: a change that adds a field,
// or a pointer, has to be deliberate (it costs memory per consumer, and a
// pointer would make the block scannable).
func TestLayout(t *testing.T) {
	if Size != 40 || keyOff != 40 {
		t.Fatalf("entry header is %d bytes with the key at %d, want 40 and 40", Size, keyOff)
	}
	e := New("queue", "group", "consumer", 1, 2)
	if uintptr(unsafe.Pointer(e))%8 != 0 {
		t.Fatal("entry is not 8-byte aligned")
	}
	q, g, c := e.Key()
	if q != "queue" || g != "group" || c != "consumer" {
		t.Fatalf("Key() = %q %q %q", q, g, c)
	}
	if e.HB() != 1 || e.Registered() != 1 || e.Leases() != 2 || !e.Live() {
		t.Fatal("New did not initialise the header")
	}
	if !e.Retire() || e.Live() || e.Retire() || e.Refresh(5, 5) {
		t.Fatal("a retired entry must stay retired and refuse refreshes")
	}
}

func TestEmptyKey(t *testing.T) {
	e := New("", "", "", 0, 0)
	if q, g, c := e.Key(); q != "" || g != "" || c != "" {
		t.Fatal("empty key did not round-trip")
	}
}

func TestActiveFollowsLeasedBeats(t *testing.T) {
	e := New("q", "g", "c", 10, 0)
	if e.Active() != nanotime.None {
		t.Fatal("a consumer registered without leases has no active time")
	}
	e.Refresh(20, 3)
	e.Refresh(30, 0)
	if e.Active() != 20 || e.HB() != 30 {
		t.Fatalf("active %d hb %d, want 20 30", e.Active(), e.HB())
	}
	e.Refresh(25, 9) // stale beat: changes nothing
	if e.Active() != 20 || e.Leases() != 0 {
		t.Fatal("a stale beat moved active or leases")
	}
	if New("q", "g", "c", 7, 1).Active() != 7 {
		t.Fatal("a consumer registered with leases is active at registration")
	}
}

func TestSetFlag(t *testing.T) {
	e := New("q", "g", "c", 0, 0)
	if !e.SetFlag(FlagStale, true) || e.SetFlag(FlagStale, true) || e.Flags()&FlagStale == 0 {
		t.Fatal("setting a flag")
	}
	if !e.SetFlag(FlagStale, false) || e.SetFlag(FlagStale, false) || e.Flags()&FlagStale != 0 {
		t.Fatal("clearing a flag")
	}
}

func TestLongKeysRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21} {
		q, g, c := string(make([]byte, n)), "g", string(make([]byte, n/2))
		e := New(q, g, c, 0, 0)
		if q2, g2, c2 := e.Key(); q2 != q || g2 != g || c2 != c {
			t.Fatalf("key with %d-byte names did not round-trip", n)
		}
	}
}

func TestDirtyMarks(t *testing.T) {
	e := New("q", "g", "c", 1, 0)
	if e.Flags()&FlagDirty == 0 {
		t.Fatal("a new entry is dirty")
	}
	e.SetFlag(FlagDirty, false)
	e.Refresh(0, 0) // stale beat: no change, no mark
	if e.Flags()&FlagDirty != 0 {
		t.Fatal("a beat that changed nothing marked the entry")
	}
	e.Refresh(2, 0)
	if e.Flags()&FlagDirty == 0 {
		t.Fatal("a refresh did not mark the entry")
	}
}

// A beat between its two writes (hb moved, lease word not yet) must not be
// read as one state: Load waits for it, and if it never completes, settles
// for times in order.
func TestLoadNeverMixesBeats(t *testing.T) {
	e := New("q", "g", "c", 10, 3)
	if st, ok := e.Load(); !ok || st != (State{Registered: 10, HB: 10, Active: 10, Leases: 3}) {
		t.Fatalf("Load() = %+v, %v", st, ok)
	}
	e.Refresh(20, 0)
	if st, _ := e.Load(); st != (State{Registered: 10, HB: 20, Active: 10, Leases: 0}) {
		t.Fatalf("after a drop to 0 leases: %+v", st)
	}
	// A stalled writer: hb moved to 30, leases still tagged 20.
	e.hb.Store(30)
	e.active.Store(40)
	if st, _ := e.Load(); st.HB != 30 || st.Active > st.HB || st.Registered > st.HB {
		t.Fatalf("times out of order: %+v", st)
	}
	e.Retire()
	if _, ok := e.Load(); ok {
		t.Fatal("Load of a retired entry")
	}
}

// Times that are 2^32 ns apart, or whole seconds, get different tags.
func TestTagsOfStructuredTimes(t *testing.T) {
	for _, base := range []int64{0, 1_000_000_000, 1 << 40} {
		for _, step := range []int64{1, 1 << 32, 1_000_000_000, 1 << 20} {
			for i := int64(1); i < 1000; i++ {
				if tagOf(base) == tagOf(base+i*step) {
					t.Fatalf("tagOf(%d) == tagOf(%d)", base, base+i*step)
				}
			}
		}
	}
}

func TestDeclaredTTL(t *testing.T) {
	e := New("q", "g", "c", 10, 0)
	if e.TTL() != 0 {
		t.Fatal("a new entry declares no TTL")
	}
	if e.BeatTTL(20, 1, 5, 0) != Recorded || e.TTL() != 5*TTLUnit {
		t.Fatalf("ttl %d after a beat declaring 5", e.TTL())
	}
	if e.SetTTL(5) {
		t.Fatal("re-declaring the same TTL reported a change")
	}
	e.BeatTTL(15, 1, 7, 100) // stale news: its declaration is older too
	if e.TTL() != 5*TTLUnit {
		t.Fatalf("a stale beat declared %d", e.TTL())
	}
	e.Beat(30, 1, 0) // declares nothing: keeps 5
	if st, _ := e.Load(); st.TTL != 5*TTLUnit || st.HB != 30 {
		t.Fatalf("Load = %+v, want TTL 5 at 30", st)
	}
	if !e.MergeTTL(10, 25, nanotime.None, 0, 9) || e.TTL() != 5*TTLUnit {
		t.Fatalf("an older merged row replaced the TTL: %d", e.TTL())
	}
	if !e.MergeTTL(10, 40, nanotime.None, 0, 9) || e.TTL() != 9*TTLUnit {
		t.Fatalf("a newer merged row did not bring its TTL: %d", e.TTL())
	}
	r := RestoreTTL("q", "g", "c", 1, 2, nanotime.None, 0, 3)
	if r.TTL() != 3*TTLUnit || MaxTTL != 4294967295*time.Millisecond {
		t.Fatal("Restore lost the TTL")
	}
}
