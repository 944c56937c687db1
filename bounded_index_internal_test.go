package presence

import (
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A group record fits the 48-byte size class on a 64-bit platform: a
// queue of one group of one consumer costs that record and a map node.
func TestGroupRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Sizeof(group{}) > 48 {
		t.Fatalf("group is %d bytes, want at most 48", unsafe.Sizeof(group{}))
	}
}

// Bounded tests of the group index's loops, as in bounded_internal_test.go;
// this file's name sorts before that one's, so that a registration loop
// that never ends fails here before that file's set-ups hang on it.

// A registration into a group that has members joins it, and its loop
// ends.
func TestJoinLiveGroupEnds(t *testing.T) {
	stopIfFailed(t)
	r := New()
	within(t, 10*time.Second, "a registration into a live group", func() {
		for _, c := range []string{"a", "b", "c"} {
			assert.NoError(t, r.Heartbeat(Key{Queue: "q", Group: "g", Consumer: c}, 0, time.Unix(1_000, 0)))
		}
	})
	assert.Equal(t, 3, len(r.SnapshotGroup(GroupKey{Queue: "q", Group: "g"}, time.Unix(1_000, 0), time.Minute)))
}

// A dead group leaves its queue's list and the groups map (or the spill)
// at once, wherever it was in them; the same groups come back, and the
// registrations that bring them back end. Groups a, b, c of one queue, and
// with every hash cut to 0 bits also the slot and the spill: each is taken
// out in turn, the index counted exactly after each step.
func TestDeadGroupsLeaveTheIndex(t *testing.T) {
	stopIfFailed(t)
	for _, opts := range [][]Option{nil, {WithHashBits(0)}} {
		r := New(opts...)
		now := time.Unix(1_000, 0)
		k := func(g string) Key { return Key{Queue: "q", Group: g, Consumer: "c"} }
		for round := range 2 {
			within(t, 10*time.Second, "registrations into groups that died", func() {
				for _, g := range []string{"a", "b", "c"} {
					assert.NoError(t, r.Heartbeat(k(g), 0, now))
				}
			})
			for i, g := range []string{"b", "a", "c"} { // the middle, the oldest, the head
				require.True(t, r.Deregister(k(g)))
				groups, _ := r.IndexSizes()
				assert.Equal(t, 2-i, groups, "round %d, %s gone", round, g)
				slots := 2 - i
				if slots == 0 {
					slots = -1 // the queue is gone
				}
				assert.Equal(t, slots, r.QueueSlots("q"), "round %d, %s gone", round, g)
			}
		}
	}
}
