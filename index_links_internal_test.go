package presence

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkLinks checks every list of the index: each group's prev is the group
// whose next it is (nil for the head), every group in a list is live, and
// a group is in groups or the spill unless it is the head of the list it
// was made into when empty. It returns the number of groups in the lists.
func checkLinks(t *testing.T, ix *index) int {
	t.Helper()
	n := 0
	ix.queues.Range(func(_ uint64, head *group) bool {
		var prev *group
		for g := head; g != nil; g = g.next.Load() {
			require.Same(t, prev, g.prev, "group %v: prev is not the group before it", g.key())
			require.Positive(t, g.live.Load(), "dead group %v still linked", g.key())
			_, gh := ix.hashes(g.key())
			if g != head {
				require.True(t, ix.mapped(gh, g), "group %v, not the head, is not mapped", g.key())
			}
			prev = g
			n++
		}
		return true
	})
	return n
}

// A queue's list is doubly linked, so that a group that dies anywhere in it
// is unlinked without a search (a prune removes a queue's groups oldest
// first, from the far end of the list: searching made it quadratic in the
// number of groups). Groups of a few queues, whose hashes collide when cut
// to 0 or 1 bits, come and go in random order, and after each step every
// list is consistent both ways, and the index holds exactly the live
// groups.
func TestQueueListLinksBothWays(t *testing.T) {
	now := time.Unix(1_000, 0)
	for _, bits := range []int{-1, 0, 1} {
		t.Run(fmt.Sprint("hashbits=", bits), func(t *testing.T) {
			var opts []Option
			if bits >= 0 {
				opts = append(opts, WithHashBits(uint(bits)))
			}
			r := New(opts...)
			rnd := rand.New(rand.NewPCG(uint64(bits+1), 3))
			live := map[Key]bool{}
			groups := func() int {
				gs := map[GroupKey]bool{}
				for k := range live {
					gs[GroupKey{k.Queue, k.Group}] = true
				}
				return len(gs)
			}
			steps := 3000
			if testing.Short() {
				steps = 600
			}
			for step := range steps {
				k := Key{Queue: fmt.Sprint("q", rnd.IntN(3)), Group: fmt.Sprint("g", rnd.IntN(12)), Consumer: fmt.Sprint("c", rnd.IntN(2))}
				if live[k] {
					require.True(t, r.Deregister(k))
					delete(live, k)
				} else {
					require.NoError(t, r.Heartbeat(k, 0, now))
					live[k] = true
				}
				require.Equal(t, groups(), checkLinks(t, &r.ix), "step %d", step)
				n, _ := r.IndexSizes()
				require.Equal(t, groups(), n, "step %d: the index holds other groups than the live ones", step)
			}
		})
	}
}
