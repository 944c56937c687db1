package presence

import (
	"fmt"
	"math/rand/v2"
	"sync"
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
	stopIfFailed(t)
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
				var ok bool
				var err error
				within(t, 10*time.Second, "a step of churn", func() {
					if live[k] {
						ok = r.Deregister(k)
					} else {
						err, ok = r.Heartbeat(k, 0, now), true
					}
				})
				require.True(t, ok, "step %d: %v was not registered", step, k)
				require.NoError(t, err, "step %d", step)
				live[k] = !live[k]
				if !live[k] {
					delete(live, k)
				}
				var linked, n int
				within(t, 10*time.Second, "a walk of the lists", func() {
					linked = checkLinks(t, &r.ix)
					n, _ = r.IndexSizes()
				})
				require.Equal(t, groups(), linked, "step %d", step)
				require.Equal(t, groups(), n, "step %d: the index holds other groups than the live ones", step)
			}
		})
	}
}

// The links stay consistent when groups of one list are made and die
// concurrently: writers on their own keys, in groups they share, with the
// hashes cut to 0 bits so that every group of every queue is in one list.
// Each writer checks at the end of each round that it left no consumer;
// once all stop, the lists hold exactly the groups left live.
func TestQueueListLinksUnderConcurrentChurn(t *testing.T) {
	stopIfFailed(t)
	now := time.Unix(1_000, 0)
	r := New(WithHashBits(0))
	const writers, keys = 2, 24
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 9))
			for range rounds {
				ks := make([]Key, 0, keys)
				for i := range keys {
					ks = append(ks, Key{Queue: fmt.Sprint("q", i%3), Group: fmt.Sprint("g", i%8), Consumer: fmt.Sprint("w", w, "-", i)})
				}
				rnd.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
				for _, k := range ks {
					if err := r.Heartbeat(k, 0, now); err != nil {
						t.Error(err)
						return
					}
				}
				rnd.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
				for _, k := range ks {
					if !r.Deregister(k) {
						t.Errorf("%v was not registered", k)
						return
					}
				}
			}
		}()
	}
	within(t, 30*time.Second, "the writers", wg.Wait)
	within(t, 10*time.Second, "the checks", func() {
		require.Zero(t, checkLinks(t, &r.ix))
		groups, queues := r.IndexSizes()
		require.Zero(t, groups+queues, "index not empty")
		for _, k := range []Key{{"q0", "g0", "a"}, {"q1", "g1", "a"}, {"q0", "g2", "a"}} {
			require.NoError(t, r.Heartbeat(k, 0, now))
		}
		require.Equal(t, 3, checkLinks(t, &r.ix))
	})
}
