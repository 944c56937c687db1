package presence_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// sum returns the sum of xs.
func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// allKeys returns how many times All passed each key.
func allKeys(r *presence.Registry) map[presence.Key]int {
	seen := map[presence.Key]int{}
	for c := range r.All(t0, ttl) {
		seen[c.Key]++
	}
	return seen
}

// A walk list keeps retired entries until they outnumber the live ones,
// then is rebuilt with the live ones only.
func TestWalkListCompactsWhenRetiredOutnumberLive(t *testing.T) {
	r := presence.New(presence.WithShards(1)) // one list
	keys := []presence.Key{key("q", "g", "a"), key("q", "g", "b"), key("q", "g", "c"), key("q", "g", "d")}
	for _, k := range keys {
		beat(t, r, k, 0, t0)
	}
	require.Equal(t, []int{4}, r.WalkListLens())
	for i, want := range []int{4, 4, 1, 0} { // retired: 1 of 3 live, 2 of 2, then 3 of 1, 1 of 0
		require.True(t, r.Deregister(keys[i]))
		assert.Equal(t, []int{want}, r.WalkListLens(), "after %d removals", i+1)
		seen := allKeys(r)
		assert.Len(t, seen, 3-i, "All after %d removals", i+1)
		for _, k := range keys[i+1:] {
			assert.Equal(t, 1, seen[k], "%v after %d removals", k, i+1)
		}
	}
	beat(t, r, keys[0], 0, t0)
	assert.Equal(t, []int{1}, r.WalkListLens(), "a registration after the rebuild appends")
	assert.Equal(t, map[presence.Key]int{keys[0]: 1}, allKeys(r))

	// PruneExpired gives an entry's place back as Deregister does.
	beat(t, r, keys[1], 0, t0.Add(-3*ttl))
	assert.Equal(t, []int{2}, r.WalkListLens())
	assert.Equal(t, 1, r.PruneExpired(t0, ttl))
	assert.Equal(t, []int{2}, r.WalkListLens(), "1 retired of 1 live: kept")
	require.True(t, r.Deregister(keys[0]))
	assert.Equal(t, []int{0}, r.WalkListLens(), "2 retired of none live: rebuilt")
}

// Every entry is in exactly one walk list, whichever way it came in: a
// registration, a key whose hash another key holds (the shard's spill), a
// checkpoint restore or a merge; and a walk passes each consumer once,
// whichever list it is in.
func TestWalkListsHoldEveryEntryOnce(t *testing.T) {
	forHashes(t, func(t *testing.T, hash ...presence.Option) {
		const n = 3000 // entries over many pages, so over many lists
		r := presence.New(append(hash, presence.WithShards(8))...)
		keys := make([]presence.Key, n)
		for i := range keys {
			keys[i] = key(fmt.Sprint("q", i%7), fmt.Sprint("g", i%3), fmt.Sprint("c", i))
			beat(t, r, keys[i], 0, t0)
		}
		check := func(r *presence.Registry, step string) {
			t.Helper()
			lens := r.WalkListLens()
			assert.Equal(t, n, sum(lens), "%s: one place per entry", step)
			used := 0
			for _, l := range lens {
				if l > 0 {
					used++
				}
			}
			assert.Greater(t, used, 1, "%s: entries spread over several lists", step)
			seen := allKeys(r)
			assert.Len(t, seen, n, "%s: All", step)
			for _, k := range keys {
				if seen[k] != 1 {
					t.Errorf("%s: All passed %v %d times", step, k, seen[k])
				}
			}
			assert.Equal(t, n, r.Stats(t0, ttl).Total(), "%s: Stats", step)
			assert.Equal(t, 0, r.PruneExpired(t0, ttl), "%s: PruneExpired", step)
			r.MarkAllChanged()
			changed := map[presence.Key]int{}
			r.CollectChanged(func(c presence.Consumer) { changed[c.Key]++ })
			assert.Len(t, changed, n, "%s: CollectChanged", step)
			for k, c := range changed {
				if c != 1 {
					t.Errorf("%s: CollectChanged passed %v %d times", step, k, c)
				}
			}
		}
		check(r, "registered")

		var cp bytes.Buffer
		_, err := r.WriteTo(&cp)
		require.NoError(t, err)
		restored := presence.New(append(hash, presence.WithShards(8))...)
		_, err = restored.ReadFrom(bytes.NewReader(cp.Bytes()))
		require.NoError(t, err)
		check(restored, "restored")
		_, err = restored.ReadFrom(bytes.NewReader(cp.Bytes()))
		require.NoError(t, err)
		check(restored, "restored twice") // merged into the live entries

		merged := presence.New(append(hash, presence.WithShards(8))...)
		for c := range r.All(t0, ttl) {
			require.NoError(t, merged.Merge(c))
		}
		check(merged, "merged")

		for _, k := range keys {
			require.True(t, r.Deregister(k))
		}
		assert.Equal(t, 0, sum(r.WalkListLens()), "every list rebuilt empty")
		assert.Empty(t, allKeys(r))
	})
}

// The walk invariant under load: while writers refresh a stable set of
// consumers and register, remove and restore others (the same keys over
// and over, so that a key's new entry often lands in another list than its
// old one), every walk passes every stable consumer exactly once and no
// consumer twice.
func TestWalkPassesEveryConsumerOnceUnderChurn(t *testing.T) {
	forHashes(t, testWalkPassesEveryConsumerOnceUnderChurn)
}

func testWalkPassesEveryConsumerOnceUnderChurn(t *testing.T, hash ...presence.Option) {
	const stableN, writers, churnN = 2000, 2, 300
	walks := scale(300)
	r := presence.New(append(hash, presence.WithShards(16))...)
	stable := make([]presence.Key, stableN)
	for i := range stable {
		stable[i] = key(fmt.Sprint("q", i%5), fmt.Sprint("g", i%40), fmt.Sprint("stable-", i))
		beat(t, r, stable[i], 0, t0)
	}
	churn := make([][]presence.Key, writers)
	checkpoints := make([][]byte, writers)
	for w := range churn {
		src := presence.New()
		for i := range churnN {
			k := key(fmt.Sprint("q", i%5), fmt.Sprint("g", i%40), fmt.Sprint("churn-", w, "-", i))
			churn[w] = append(churn[w], k)
			beat(t, src, k, 0, t0)
		}
		var buf bytes.Buffer
		_, err := src.WriteTo(&buf)
		require.NoError(t, err)
		checkpoints[w] = buf.Bytes()
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; !stop.Load(); round++ {
				for i, k := range churn[w] {
					if err := r.Heartbeat(k, 0, t0); err != nil {
						t.Error(err)
						return
					}
					_ = r.Heartbeat(stable[(round*churnN+i)%stableN], 1, t0) // a refresh
				}
				if round%4 == 0 { // restore the whole set from a checkpoint
					if _, err := r.ReadFrom(bytes.NewReader(checkpoints[w])); err != nil {
						t.Error(err)
						return
					}
				}
				for _, k := range churn[w] {
					r.Deregister(k)
				}
			}
		}()
	}

	maxN := stableN + writers*churnN
	check := func(seen map[presence.Key]int, op string, walk int) {
		for k, c := range seen {
			if c != 1 {
				t.Errorf("walk %d (%s) passed %v %d times", walk, op, k, c)
			}
		}
		for _, k := range stable {
			if seen[k] != 1 {
				t.Errorf("walk %d (%s) passed stable %v %d times", walk, op, k, seen[k])
			}
		}
	}
	for i := 0; i < walks && !t.Failed(); i++ {
		switch i % 4 {
		case 0:
			check(allKeys(r), "All", i)
		case 1:
			r.MarkAllChanged()
			seen := map[presence.Key]int{}
			r.CollectChanged(func(c presence.Consumer) { seen[c.Key]++ })
			check(seen, "CollectChanged", i)
		case 2:
			if n := r.Stats(t0, ttl).Total(); n < stableN || n > maxN {
				t.Errorf("walk %d: Stats counted %d consumers, want %d to %d", i, n, stableN, maxN)
			}
		default:
			if n := r.PruneExpired(t0, ttl); n != 0 {
				t.Errorf("walk %d: PruneExpired removed %d consumers, none expired", i, n)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, ks := range churn {
		for _, k := range ks {
			r.Deregister(k)
		}
	}
	assert.Equal(t, stableN, r.Len())
	check(allKeys(r), "All, quiescent", walks)
}

// A walk that holds a list while the list is rebuilt keeps reading the
// array it copied: it passes every consumer that stayed registered exactly
// once, however many rebuilds happen under it.
func TestWalkListCompactionUnderConcurrentWalks(t *testing.T) {
	const stableN, churnN = 200, 300
	rounds := scale(400)
	r := presence.New(presence.WithShards(1)) // one list, rebuilt every round
	stable := make([]presence.Key, stableN)
	for i := range stable {
		stable[i] = key("q", "g", fmt.Sprint("stable-", i))
		beat(t, r, stable[i], 0, t0)
	}
	churn := make([]presence.Key, churnN)
	for i := range churn {
		churn[i] = key("q", "g", fmt.Sprint("churn-", i))
	}

	var done atomic.Bool
	var walked atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				seen := allKeys(r)
				for _, k := range stable {
					if seen[k] != 1 {
						t.Errorf("a walk passed stable %v %d times", k, seen[k])
						return
					}
				}
				for k, c := range seen {
					if c != 1 {
						t.Errorf("a walk passed %v %d times", k, c)
						return
					}
				}
				walked.Add(1)
			}
		}()
	}
	for round := 0; round < rounds && !t.Failed(); round++ {
		for _, k := range churn {
			beat(t, r, k, 0, t0)
		}
		for _, k := range churn {
			require.True(t, r.Deregister(k))
		}
		// Every round retires churnN entries, more than the live ones
		// left: the list was rebuilt.
		require.Less(t, sum(r.WalkListLens()), stableN+churnN, "round %d", round)
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d walks over %d rounds", walked.Load(), rounds)
	assert.Equal(t, stableN, r.Len())
}
