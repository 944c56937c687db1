package entry

import (
	"testing"
	"unsafe"
)

// The header is five words on every platform: a change that adds a field,
// or a pointer, has to be deliberate (it costs memory per consumer, and a
// pointer would make the block scannable).
func TestLayout(t *testing.T) {
	if Size != 40 {
		t.Fatalf("entry header is %d bytes, want 40", Size)
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
