package presence

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The sorted walks' spare lists hold nothing alive once a walk is done: not
// the members of a large group sorted before a smaller one, whose places
// the smaller one's members reuse without covering them all. Otherwise a
// registry that was snapshotted once keeps entries of consumers that left
// (and their key strings, up to MaxKeyBytes each) for as long as no larger
// snapshot comes.
func TestSortedWalkSpareHoldsNothing(t *testing.T) {
	now := time.Unix(1000, 0)
	r := New()
	for _, k := range []Key{{"q", "a", "1"}, {"q", "a", "2"}, {"q", "a", "3"}, {"q", "b", "1"}} {
		require.NoError(t, r.Heartbeat(k, 0, now))
	}
	for _, view := range []func(){
		func() { r.Snapshot(now, time.Minute) },
		func() { r.SnapshotQueue("q", now, time.Minute) },
	} {
		view()
		buf := r.ix.spare.Load()
		require.NotNil(t, buf)
		for i, g := range buf.groups[:cap(buf.groups)] {
			require.Nil(t, g.g, "group %d still held", i)
		}
		for i, m := range buf.members[:cap(buf.members)] {
			require.Nil(t, m.e, "member %d still held", i)
		}
	}
}
