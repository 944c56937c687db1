package presence

import (
	"testing"
	"unsafe"
)

// A group record fits the 48-byte size class on a 64-bit platform: a
// queue of one group of one consumer costs that record and a map node.
func TestGroupRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Sizeof(group{}) > 48 {
		t.Fatalf("group is %d bytes, want at most 48", unsafe.Sizeof(group{}))
	}
}
