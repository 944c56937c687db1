package presence_test

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Tests of the group index (index.go): a queue's list of groups, and groups
// whose hashes are equal.

// Groups appear and die in one queue while readers list it: every reader
// sees each consumer that stayed registered throughout its read, in the
// queue's list of groups and in the rows, and never a group or row twice.
// Writers register and deregister two consumers in each of a dozen groups,
// so that the list's head dies and is replaced, groups are unlinked from
// its middle, and groups come back. With the hash cut to 0 or 1 bits,
// every group and queue shares a hash with others: the lists are shared
// with a bystander queue, and groups go to the spill.
func TestQueueListUnderChurn(t *testing.T) {
	for _, bits := range []int{-1, 0, 1} {
		t.Run(fmt.Sprint("hashbits=", bits), func(t *testing.T) {
			var opts []presence.Option
			if bits >= 0 {
				opts = append(opts, presence.WithHashBits(uint(bits)))
			}
			testQueueListUnderChurn(t, presence.New(opts...))
		})
	}
}

func testQueueListUnderChurn(t *testing.T, r *presence.Registry) {
	const groups, writers, readers = 12, 2, 2
	bystander := key("other", "g0", "a")
	beat(t, r, bystander, 0, t0)
	slotKey := func(i int) presence.Key {
		return key("q", fmt.Sprint("g", i/2), fmt.Sprint("c", i%2))
	}
	// state[i] is odd while slot i's consumer is registered: it moves to
	// odd after its Heartbeat returns and to even before its Deregister.
	var state [2 * groups]atomic.Int64
	iters := scale(40000)
	var wg sync.WaitGroup
	var done atomic.Bool
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for range iters {
				i := w + writers*rnd.IntN(len(state)/writers) // each writer owns its slots
				if state[i].Load()%2 == 0 {
					if err := r.Heartbeat(slotKey(i), 0, t0); err != nil {
						t.Error(err)
						return
					}
					state[i].Add(1)
				} else {
					state[i].Add(1)
					if !r.Deregister(slotKey(i)) {
						t.Errorf("%v was not registered", slotKey(i))
						return
					}
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	var reads atomic.Int64
	for range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			var before [len(state)]int64
			for !done.Load() && !t.Failed() {
				for i := range state {
					before[i] = state[i].Load()
				}
				listed := r.QueueGroups("q")
				rows := r.SnapshotQueue("q", t0, ttl)
				all := r.Snapshot(t0, ttl)
				everyGroup := r.IndexGroups()
				reads.Add(1)
				checkUnique(t, "queue list", listed)
				checkUnique(t, "index walk", everyGroup)
				rowKeys := checkUniqueRows(t, "SnapshotQueue", rows)
				allKeys := checkUniqueRows(t, "Snapshot", all)
				for _, g := range listed {
					if g.Queue != "q" {
						t.Errorf("queue q lists %v", g)
					}
				}
				if !allKeys[bystander] || !slices.Contains(everyGroup, presence.GroupKey{Queue: "other", Group: "g0"}) {
					t.Errorf("the bystander is missing")
				}
				for i := range state {
					if b := before[i]; b%2 == 0 || state[i].Load() != b {
						continue // not registered throughout the read
					}
					k := slotKey(i)
					gk := presence.GroupKey{Queue: k.Queue, Group: k.Group}
					switch {
					case !slices.Contains(listed, gk):
						t.Errorf("queue list misses %v, live throughout", gk)
					case !slices.Contains(everyGroup, gk):
						t.Errorf("index walk misses %v, live throughout", gk)
					case !rowKeys[k] || !allKeys[k]:
						t.Errorf("rows miss %v, registered throughout", k)
					}
				}
			}
		}()
	}
	wg.Wait()
	done.Store(true)
	rwg.Wait()
	require.NotZero(t, reads.Load())
	t.Logf("%d reads", reads.Load())
	for i := range state {
		if state[i].Load()%2 == 1 {
			require.True(t, r.Deregister(slotKey(i)))
		}
	}
	require.True(t, r.Deregister(bystander))
	g, q := r.IndexSizes()
	assert.Zero(t, g+q, "index not empty")
}

func checkUnique(t *testing.T, what string, gs []presence.GroupKey) {
	t.Helper()
	seen := make(map[presence.GroupKey]bool, len(gs))
	for _, g := range gs {
		if seen[g] {
			t.Errorf("%s: %v twice", what, g)
		}
		seen[g] = true
	}
}

func checkUniqueRows(t *testing.T, what string, rows []presence.Consumer) map[presence.Key]bool {
	t.Helper()
	seen := make(map[presence.Key]bool, len(rows))
	for _, c := range rows {
		if seen[c.Key] {
			t.Errorf("%s: %v twice", what, c.Key)
		}
		seen[c.Key] = true
	}
	return seen
}

// A reader standing on a group when it is unlinked goes on to the rest of
// the list. A queue has four groups; the reader's walk pauses after each
// one in turn (the head, the middle ones, the last), and there the group
// it stands on leaves, with the group after it for good measure, and then,
// in some runs, both come back as new groups of the same keys. The walk
// still lists every group that was there throughout, and no key twice.
func TestQueueListReaderOnUnlinkedGroup(t *testing.T) {
	for _, bits := range []int{-1, 0} {
		for at := range 4 {
			for _, alsoNext := range []bool{false, true} {
				for _, comeBack := range []bool{false, true} {
					t.Run(fmt.Sprintf("hashbits=%d/at=%d/next=%v/back=%v", bits, at, alsoNext, comeBack), func(t *testing.T) {
						var opts []presence.Option
						if bits >= 0 {
							opts = append(opts, presence.WithHashBits(uint(bits)))
						}
						testReaderOnUnlinkedGroup(t, presence.New(opts...), at, alsoNext, comeBack)
					})
				}
			}
		}
	}
}

func testReaderOnUnlinkedGroup(t *testing.T, r *presence.Registry, at int, alsoNext, comeBack bool) {
	for _, g := range []string{"a", "b", "c", "d"} {
		beat(t, r, key("q", g, "c"), 0, t0)
	}
	order := r.QueueGroups("q")
	require.Len(t, order, 4)
	want := slices.Clone(order)
	leave := []presence.GroupKey{order[at]}
	if alsoNext && at+1 < len(order) {
		leave = append(leave, order[at+1])
		want = slices.Delete(want, at+1, at+2)
	}
	step := 0
	clear := presence.SetTestHook(func(p presence.HookPoint) {
		if p != presence.HookListStep {
			return
		}
		if step == at {
			for _, g := range leave {
				require.True(t, r.Deregister(key(g.Queue, g.Group, "c")))
			}
			for _, g := range leave {
				if comeBack {
					beat(t, r, key(g.Queue, g.Group, "c"), 0, t0)
				}
			}
		}
		step++
	})
	got := r.QueueGroups("q")
	clear()
	assert.Equal(t, want, got)
	n := 4 - len(leave)
	if comeBack {
		n = 4
	}
	assert.Len(t, r.QueueGroups("q"), n)
}

// inOtherShard returns the first of mk(0), mk(1), ... whose shard in r is
// not k's, so that a pause point reached under k's bucket lock may
// register or remove it.
func inOtherShard(t *testing.T, r *presence.Registry, k presence.Key, mk func(i int) presence.Key) presence.Key {
	t.Helper()
	shift := 64 - bits.Len(uint(r.Shards()-1))
	shard := func(k presence.Key) uint64 { return presence.HashKey(r, k) >> shift }
	for i := range 1000 {
		if o := mk(i); shard(o) != shard(k) {
			return o
		}
	}
	t.Fatal("no key in another shard")
	return presence.Key{}
}

// countOf returns how often gk is among gs.
func countOf(gs []presence.GroupKey, gk presence.GroupKey) int {
	n := 0
	for _, g := range gs {
		if g == gk {
			n++
		}
	}
	return n
}

// Two registrations make one group. One finds no group and, about to make
// it, finds that the other made it meanwhile: as its list's head, or, once
// a newer group has displaced it from there, in the groups map. It joins
// that group instead of making a second.
func TestRegistrationsRaceToMakeAGroup(t *testing.T) {
	for _, head := range []bool{true, false} {
		t.Run(fmt.Sprint("head=", head), func(t *testing.T) {
			r := presence.New(presence.WithShards(2))
			gk := presence.GroupKey{Queue: "q", Group: "g"}
			a := key("q", "g", "a")
			b := inOtherShard(t, r, a, func(i int) presence.Key { return key("q", "g", fmt.Sprint("b", i)) })
			later := inOtherShard(t, r, a, func(i int) presence.Key { return key("q", fmt.Sprint("later", i), "c") })
			clear := onceAt(presence.HookGroupLoaded, func() {
				beat(t, r, b, 0, t0)
				if !head { // a newer group displaces g from the list's head into groups
					beat(t, r, later, 0, t0)
				}
			})
			beat(t, r, a, 0, t0)
			require.True(t, clear(), "the registration did not reach its pause point")
			assert.Equal(t, 1, countOf(r.QueueGroups("q"), gk), "groups listed: %v", r.QueueGroups("q"))
			assert.Equal(t, []string{"a", b.Consumer}, consumers(r.SnapshotGroup(gk, t0, ttl)))
			require.True(t, r.Deregister(a))
			require.True(t, r.Deregister(b))
			assert.Zero(t, countOf(r.IndexGroups(), gk))
		})
	}
}

// A registration finds its group, whose last member then leaves before the
// registration joins: it makes the group anew rather than join the dead
// one, which is no longer in the index.
func TestRegistrationFindsItsGroupDying(t *testing.T) {
	for _, head := range []bool{true, false} {
		t.Run(fmt.Sprint("head=", head), func(t *testing.T) {
			r := presence.New(presence.WithShards(2))
			gk := presence.GroupKey{Queue: "q", Group: "g"}
			a := key("q", "g", "a")
			old := inOtherShard(t, r, a, func(i int) presence.Key { return key("q", "g", fmt.Sprint("old", i)) })
			beat(t, r, old, 0, t0)
			if !head { // a newer group displaces g from the list's head into groups
				beat(t, r, key("q", "later", "c"), 0, t0)
			}
			clear := onceAt(presence.HookGroupLoaded, func() { require.True(t, r.Deregister(old)) })
			beat(t, r, a, 0, t0)
			require.True(t, clear(), "the registration did not reach its pause point")
			assert.Equal(t, 1, countOf(r.QueueGroups("q"), gk))
			assert.Equal(t, []string{"a"}, consumers(r.SnapshotGroup(gk, t0, ttl)))
			require.True(t, r.Deregister(a))
			groups, _ := r.IndexSizes()
			assert.Equal(t, map[bool]int{true: 0, false: 1}[head], groups)
		})
	}
}

// Groups and queues whose hashes are equal all work: with the hash cut to
// 0 or 1 bits, the groups of two queues share one list or two, the first
// group of a list is its head and the others share the groups map's slots
// and its spill. Random registrations and removals, checked after each
// against a model: every group's and queue's view, the counts, the per-group
// limit, and an index that holds exactly the groups that have consumers.
func TestGroupsSharingHashes(t *testing.T) {
	for _, bits := range []int{-1, 0, 1} {
		t.Run(fmt.Sprint("hashbits=", bits), func(t *testing.T) {
			opts := []presence.Option{presence.WithMaxConsumersPerGroup(2)}
			if bits >= 0 {
				opts = append(opts, presence.WithHashBits(uint(bits)))
			}
			testGroupsSharingHashes(t, presence.New(opts...), scale(3000))
		})
	}
}

func testGroupsSharingHashes(t *testing.T, r *presence.Registry, steps int) {
	queues, groups, names := []string{"p", "q"}, []string{"a", "b", "c"}, []string{"x", "y", "z"}
	model := map[presence.GroupKey][]string{} // sorted consumer names
	rnd := rand.New(rand.NewPCG(1, 2))
	for step := range steps {
		k := key(queues[rnd.IntN(2)], groups[rnd.IntN(3)], names[rnd.IntN(3)])
		gk := presence.GroupKey{Queue: k.Queue, Group: k.Group}
		i, in := slices.BinarySearch(model[gk], k.Consumer)
		switch err := r.Heartbeat(k, 0, t0); {
		case in:
			require.NoError(t, err)
			require.True(t, r.Deregister(k))
			model[gk] = slices.Delete(model[gk], i, i+1)
		case len(model[gk]) == 2:
			require.ErrorIs(t, err, presence.ErrGroupFull, "step %d: %v", step, k)
		default:
			require.NoError(t, err)
			model[gk] = slices.Insert(model[gk], i, k.Consumer)
		}
		checkIndex(t, r, queues, groups, model)
		if t.Failed() {
			t.Fatalf("step %d: %v", step, k)
		}
	}
}

// checkIndex compares every view of the group index with model.
func checkIndex(t *testing.T, r *presence.Registry, queues, groups []string, model map[presence.GroupKey][]string) {
	t.Helper()
	nonEmpty := 0
	counts := map[presence.GroupKey]presence.Counts{}
	for _, q := range queues {
		inQueue := []presence.Key{} // in Snapshot's order: groups and names sorted
		var want []presence.GroupKey
		for _, g := range groups {
			gk := presence.GroupKey{Queue: q, Group: g}
			ms := append([]string{}, model[gk]...)
			assert.Equal(t, ms, consumers(r.SnapshotGroup(gk, t0, ttl)), "group %v", gk)
			if len(ms) > 0 {
				nonEmpty++
				want = append(want, gk)
				counts[gk] = presence.Counts{Active: len(ms)}
				assert.GreaterOrEqual(t, r.GroupSlots(gk), len(ms), "group %v", gk)
			} else {
				assert.Equal(t, -1, r.GroupSlots(gk), "group %v", gk)
			}
			for _, c := range ms {
				inQueue = append(inQueue, key(q, g, c))
			}
		}
		var got []presence.Key
		for _, c := range r.SnapshotQueue(q, t0, ttl) {
			got = append(got, c.Key)
		}
		assert.Equal(t, inQueue, append([]presence.Key{}, got...), "queue %s", q)
		listed := r.QueueGroups(q)
		slices.SortFunc(listed, func(a, b presence.GroupKey) int {
			return presence.CompareKeys(presence.Key{Queue: a.Queue, Group: a.Group}, presence.Key{Queue: b.Queue, Group: b.Group})
		})
		assert.Equal(t, want, listed, "queue %s's list", q)
	}
	assert.Equal(t, counts, r.CountByGroup(t0, ttl))
	g, _ := r.IndexSizes()
	assert.Equal(t, nonEmpty, g, "groups in the index")
}

// A group's member array keeps departed members until they outnumber the
// live ones, and is then rebuilt with the live ones alone: ten members
// leave one by one, and the array's length after each departure is exactly
// what that rule gives.
func TestGroupCompactsWhenDepartedOutnumberLive(t *testing.T) {
	r := presence.New()
	gk := presence.GroupKey{Queue: "q", Group: "g"}
	for i := range 10 {
		beat(t, r, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	var slots []int
	for i := range 9 {
		require.True(t, r.Deregister(key("q", "g", fmt.Sprint(i))))
		slots = append(slots, r.GroupSlots(gk))
	}
	// 10 slots until 6 of 10 left; then 4, kept until 3 of them left.
	assert.Equal(t, []int{10, 10, 10, 10, 10, 4, 4, 4, 1}, slots)
	assert.Equal(t, []string{"9"}, consumers(r.SnapshotGroup(gk, t0, ttl)))
}
