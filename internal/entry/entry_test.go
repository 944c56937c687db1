package entry

import (
	"testing"
	"unsafe"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// The header is five words on every platform: a change that adds a field,
// or a pointer, has to be deliberate (it costs memory per consumer, and a
// pointer would make the block scannable).
func TestLayout(t *testing.T) {
	if Size != 40 || keyOff != 36 {
		t.Fatalf("entry header is %d bytes with the key at %d, want 40 and 36", Size, keyOff)
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
