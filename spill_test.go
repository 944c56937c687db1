package presence_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// These tests attack the shards' spill (shard.go): with WithHashBits(0) every
// key has hash 0, so one key holds a shard map's slot and every other key
// lives in the spill; with 1 or 2 bits, a few keys share each slot.

// collidingBits are the hash widths the spill tests run with.
var collidingBits = []uint{0, 1, 2}

// checkModel asserts that r holds exactly the keys of want, once each, that
// Len agrees, and that Lookup finds every key of want and none other of
// keys.
func checkModel(t *testing.T, r *presence.Registry, keys []presence.Key, want map[presence.Key]bool, step string) {
	t.Helper()
	rows := r.Snapshot(t0, time.Hour)
	seen := map[presence.Key]bool{}
	for _, c := range rows {
		require.Falsef(t, seen[c.Key], "%s: duplicate row for %v", step, c.Key)
		seen[c.Key] = true
	}
	require.Equalf(t, len(rows), r.Len(), "%s: Len disagrees with the snapshot", step)
	for _, k := range keys {
		_, ok := r.Lookup(k, t0, time.Hour)
		require.Equalf(t, want[k], ok, "%s: Lookup(%v)", step, k)
		require.Equalf(t, want[k], seen[k], "%s: snapshot row of %v", step, k)
	}
}

// The key that holds the map's slot leaves while others of its hash stay in
// the spill; then keys come back in every order. No key is ever missed or
// listed twice, and Joined/Left alternate for every key.
func TestSpillSlotOwnerLeaves(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) {
			r := presence.New(presence.WithHashBits(bits), presence.WithShards(1))
			sub := r.Subscribe(1 << 12)
			keys := []presence.Key{key("q", "g", "a"), key("q", "g", "b"), key("q", "g", "c"), key("q", "h", "a"), key("p", "g", "a")}
			want := map[presence.Key]bool{}
			do := func(step string, f func()) {
				f()
				checkModel(t, r, keys, want, step)
			}
			beatK := func(i int) {
				do(fmt.Sprint("beat ", i), func() { require.NoError(t, r.Heartbeat(keys[i], 0, t0)); want[keys[i]] = true })
			}
			leave := func(i int) {
				do(fmt.Sprint("leave ", i), func() {
					require.Equal(t, want[keys[i]], r.Deregister(keys[i]))
					want[keys[i]] = false
				})
			}
			for i := range keys {
				beatK(i) // 0 takes the slot (bits=0), the rest spill
			}
			leave(0) // the slot's owner leaves; the spill stays
			beatK(1) // refresh of a spilled key while the slot is free
			beatK(0) // 0 comes back, into the free slot
			leave(1)
			beatK(1) // 1 comes back: slot taken, so to the spill again
			leave(0)
			leave(2)
			beatK(2) // the slot is free and the spill non-empty
			beatK(0)
			for i := range keys {
				leave(i)
			}
			for i := len(keys) - 1; i >= 0; i-- {
				beatK(i)
			}
			// Prune removes slot and spill entries alike.
			assert.Equal(t, len(keys), r.PruneExpired(t0.Add(time.Hour), time.Second))
			clear(want)
			checkModel(t, r, keys, want, "pruned")
			g, q := r.IndexSizes()
			assert.Zero(t, g+q, "index not empty")
			sub.Close()
			in := map[presence.Key]bool{}
			for ev := range sub.C {
				joined := ev.Kind == presence.EventJoined
				require.NotEqualf(t, joined, in[ev.Key], "%v %v out of order", ev.Key, ev.Kind)
				in[ev.Key] = joined
			}
		})
	}
}

// Limits count spilled keys like any other, and a key leaving the spill or
// the slot gives its place back.
func TestSpillLimits(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) {
			r := presence.New(presence.WithHashBits(bits), presence.WithMaxConsumers(3), presence.WithMaxConsumersPerGroup(2))
			ks := []presence.Key{key("q", "g", "a"), key("q", "g", "b"), key("q", "h", "c"), key("q", "h", "d"), key("q", "i", "e")}
			beat(t, r, ks[0], 0, t0)
			beat(t, r, ks[1], 0, t0)
			require.ErrorIs(t, r.Heartbeat(key("q", "g", "x"), 0, t0), presence.ErrGroupFull)
			beat(t, r, ks[2], 0, t0)
			require.ErrorIs(t, r.Heartbeat(ks[3], 0, t0), presence.ErrTooManyConsumers)
			require.True(t, r.Deregister(ks[1]))
			beat(t, r, ks[3], 0, t0)
			require.True(t, r.Deregister(ks[0]))
			beat(t, r, ks[4], 0, t0)
			require.ErrorIs(t, r.Heartbeat(ks[0], 0, t0), presence.ErrTooManyConsumers)
			// A refused key is absent, and so is a MarkChanged of it.
			assert.False(t, r.MarkChanged(ks[0]))
			checkModel(t, r, append(ks, key("q", "g", "x")), map[presence.Key]bool{ks[2]: true, ks[3]: true, ks[4]: true}, "full")
		})
	}
}

// MarkChanged of an absent key whose hash another key holds (in the slot or
// the spill) finds nothing and stores nothing; of a spilled key, it marks it.
func TestSpillMarkChanged(t *testing.T) {
	r := presence.New(presence.WithHashBits(0))
	a, b, c := key("q", "g", "a"), key("q", "g", "b"), key("q", "g", "c")
	beat(t, r, a, 0, t0)
	assert.False(t, r.MarkChanged(b), "absent, slot taken, spill empty")
	beat(t, r, b, 0, t0)
	assert.False(t, r.MarkChanged(c), "absent, slot taken, spill not empty")
	require.True(t, r.Deregister(a))
	assert.False(t, r.MarkChanged(a), "absent, slot free, spill not empty")
	assert.False(t, r.MarkChanged(c))
	checkModel(t, r, []presence.Key{a, b, c}, map[presence.Key]bool{b: true}, "after marks")
	collect(r)
	assert.Empty(t, collect(r))
	assert.True(t, r.MarkChanged(b), "spilled and present")
	assert.Equal(t, []presence.Key{b}, keysOf(collect(r)))
	beat(t, r, c, 0, t0) // into the free slot
	assert.True(t, r.MarkChanged(c))
	assert.Equal(t, []presence.Key{c}, keysOf(collect(r)))
	checkModel(t, r, []presence.Key{a, b, c}, map[presence.Key]bool{b: true, c: true}, "end")
}

func keysOf(m map[presence.Key]presence.Consumer) []presence.Key {
	var ks []presence.Key
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// The spill's map keys are the entries' own strings: a caller that reuses
// the buffer its key strings point into changes nothing in the registry,
// whichever way the key came in (heartbeat, handle, merge, mark).
func TestSpillCopiesKeys(t *testing.T) {
	r := presence.New(presence.WithHashBits(0))
	owner := key("q", "g", "owner")
	beat(t, r, owner, 0, t0) // holds the slot: the keys below spill
	names := []string{"qgbeat", "qgmerge", "qghandle"}
	bufs := make([][]byte, len(names))
	for i, n := range names {
		bufs[i] = []byte(n)
	}
	beat(t, r, mutableKey(bufs[0], 1, 1), 0, t0)
	require.NoError(t, r.Merge(presence.Consumer{Key: mutableKey(bufs[1], 1, 1), RegisteredAt: t0, LastHeartbeat: t0}))
	require.NoError(t, r.Handle(mutableKey(bufs[2], 1, 1)).Heartbeat(0, t0))
	mark := []byte("qgbeat")
	assert.True(t, r.MarkChanged(mutableKey(mark, 1, 1)))
	for _, b := range append(bufs, mark) {
		copy(b, bytes.Repeat([]byte("X"), len(b)))
	}
	want := map[presence.Key]bool{owner: true}
	all := []presence.Key{owner}
	for _, n := range names {
		k := key(n[:1], n[1:2], n[2:])
		want[k] = true
		all = append(all, k)
	}
	checkModel(t, r, all, want, "after the buffers were reused")
	require.True(t, r.Deregister(owner))
	for _, k := range all[1:] {
		require.Truef(t, r.Deregister(k), "Deregister(%v)", k)
	}
	checkModel(t, r, all, map[presence.Key]bool{}, "all gone")
}

// A random program of single-goroutine operations on keys that collide, run
// against a model: after every operation the registry holds exactly the
// model's keys.
func TestSpillModel(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(bits), 7))
			r := presence.New(presence.WithHashBits(bits), presence.WithShards(2))
			var keys []presence.Key
			for i := range 7 {
				keys = append(keys, key(fmt.Sprint("q", i%2), fmt.Sprint("g", i%3), fmt.Sprint(i)))
			}
			handles := map[presence.Key]*presence.Handle{}
			want := map[presence.Key]bool{}
			now := t0
			for step := range scale(4000) {
				k := keys[rng.IntN(len(keys))]
				var desc string
				switch op := rng.IntN(6); op {
				case 0:
					desc = "beat"
					require.NoError(t, r.Heartbeat(k, 1, now))
					want[k] = true
				case 1:
					desc = "deregister"
					require.Equal(t, want[k], r.Deregister(k))
					want[k] = false
				case 2:
					desc = "handle"
					h := handles[k]
					if h == nil {
						h = r.Handle(k)
						handles[k] = h
					}
					require.NoError(t, h.Heartbeat(2, now))
					want[k] = true
				case 3:
					desc = "mark"
					require.Equal(t, want[k], r.MarkChanged(k))
				case 4:
					desc = "merge"
					require.NoError(t, r.Merge(presence.Consumer{Key: k, RegisteredAt: now, LastHeartbeat: now}))
					want[k] = true
				case 5:
					desc = "prune"
					// What was beaten before now is expired a second
					// later under a TTL of 400 ms.
					now = now.Add(time.Second)
					r.PruneExpired(now, 400*time.Millisecond)
					clear(want)
				}
				checkModel(t, r, keys, want, fmt.Sprint("step ", step, ": ", desc, " ", k))
			}
		})
	}
}

// Many goroutines run every operation on a few keys that collide: each
// goroutine owns its keys, so the last operation it ran on one decides
// whether the key must be present at the end. A pruner expires what was
// beaten with an ancient time, a mirror collects changes and deletions
// (failing some deliveries, which it marks again), and a subscriber checks
// that each key's Joined and Left/Expired alternate. At rest: no duplicate
// row, Len agrees, no lost registration or deregistration, and the mirror's
// copy after one more round equals the registry.
func TestSpillChurn(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) { testSpillChurn(t, bits) })
	}
}

func testSpillChurn(t *testing.T, bits uint) {
	const workers, perWorker = 3, 4
	ops := scale(6000)
	r := presence.New(presence.WithHashBits(bits), presence.WithShards(2))
	sub := r.Subscribe(1 << 14)
	r.CollectDeleted(func(presence.Key) {}) // start recording

	// The mirror.
	mirror := map[presence.Key]presence.Consumer{} // the mirror goroutine's, then the test's
	var failRows, failDels int
	round := func(rng *rand.Rand) {
		var failed []presence.Key
		r.CollectDeleted(func(k presence.Key) {
			if rng != nil && rng.IntN(8) == 0 {
				failDels++
				failed = append(failed, k) // fn may not call MarkDeleted itself
				return
			}
			delete(mirror, k)
		})
		for _, k := range failed {
			r.MarkDeleted(k)
		}
		r.CollectChanged(func(c presence.Consumer) {
			if rng != nil && rng.IntN(8) == 0 {
				failRows++
				r.MarkChanged(c.Key)
				return
			}
			mirror[c.Key] = c
		})
	}

	// The event reader.
	var bad []string
	read := make(chan struct{})
	in := map[presence.Key]bool{}
	gone := map[presence.Key]presence.EventKind{} // how each key last left
	go func() {
		defer close(read)
		for ev := range sub.C {
			switch ev.Kind {
			case presence.EventJoined:
				if in[ev.Key] {
					bad = append(bad, fmt.Sprint(ev.Key, " joined twice"))
				}
				in[ev.Key] = true
			case presence.EventLeft, presence.EventExpired:
				if !in[ev.Key] {
					bad = append(bad, fmt.Sprint(ev.Key, " ", ev.Kind, " while absent"))
				}
				in[ev.Key] = false
				gone[ev.Key] = ev.Kind
			}
		}
	}()
	wait := func() {
		for len(sub.C) > cap(sub.C)/2 {
			runtime.Gosched()
		}
	}

	ancient := t0.Add(-time.Hour)
	type last struct {
		op string // "fresh", "ancient", "gone"
		at time.Time
	}
	finals := make([]map[presence.Key]last, workers)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // the pruner
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			wait()
			r.PruneExpired(t0.Add(time.Second), time.Minute)
		}
	}()
	go func() { // the mirror
		defer bg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-stop:
				return
			default:
			}
			wait()
			round(rng)
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(bits)))
			var keys []presence.Key
			handles := map[presence.Key]*presence.Handle{}
			fin := map[presence.Key]last{}
			for i := range perWorker {
				k := key(fmt.Sprint("q", i%2), "g", fmt.Sprint(w, "-", i))
				keys = append(keys, k)
				handles[k] = r.Handle(k)
			}
			for n := range ops {
				wait()
				k := keys[rng.IntN(len(keys))]
				fresh := t0.Add(time.Duration(n) * time.Microsecond)
				switch rng.IntN(7) {
				case 0:
					if err := r.Heartbeat(k, 1, fresh); err != nil {
						t.Error(err)
						return
					}
					fin[k] = last{"fresh", fresh}
				case 1:
					if err := handles[k].Heartbeat(1, fresh); err != nil {
						t.Error(err)
						return
					}
					fin[k] = last{"fresh", fresh}
				case 2:
					if err := r.Heartbeat(k, 1, ancient); err != nil {
						t.Error(err)
						return
					}
					fin[k] = last{"ancient", ancient}
				case 3:
					r.Deregister(k)
					fin[k] = last{"gone", time.Time{}}
				case 4:
					if ok := r.MarkChanged(k); ok && fin[k].op == "gone" {
						t.Errorf("MarkChanged(%v) found a deregistered key", k)
						return
					} else if !ok && fin[k].op == "fresh" {
						t.Errorf("MarkChanged(%v) missed a registered key", k)
						return
					}
				case 5:
					if err := r.Merge(presence.Consumer{Key: k, RegisteredAt: fresh, LastHeartbeat: fresh}); err != nil {
						t.Error(err)
						return
					}
					if fin[k].op != "fresh" || fin[k].at.Before(fresh) {
						fin[k] = last{"fresh", fresh}
					}
				case 6:
					_, ok := r.Lookup(k, t0, time.Hour)
					if !ok && fin[k].op == "fresh" {
						t.Errorf("Lookup(%v) missed a registered key", k)
						return
					}
					if ok && fin[k].op == "gone" {
						t.Errorf("Lookup(%v) found a deregistered key", k)
						return
					}
				}
			}
			finals[w] = fin
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	require.False(t, t.Failed())

	rows := checkRows(t, r, r.Snapshot(t0, time.Hour))
	for _, fin := range finals {
		for k, l := range fin {
			c, ok := rows[k]
			switch l.op {
			case "fresh":
				if assert.Truef(t, ok, "%v lost its registration", k) {
					assert.Truef(t, !c.LastHeartbeat.Before(l.at), "%v: heartbeat %v, want %v or later", k, c.LastHeartbeat, l.at)
				}
			case "gone":
				assert.Falsef(t, ok, "%v survived its deregistration", k)
			}
		}
	}
	sub.Close()
	<-read
	require.Zero(t, sub.Dropped())
	assert.Emptyf(t, bad, "%d events out of order; first %v", len(bad), bad[:min(len(bad), 3)])
	for k, c := range in {
		_, ok := rows[k]
		assert.Equalf(t, ok, c, "membership rebuilt from events disagrees for %v", k)
	}
	round(nil)
	// The mirror holds every row as the registry has it. A row the registry
	// no longer has may stay in the mirror only if a prune removed it
	// (prunes record no deletion: a mirror expires rows by their age), not
	// if a Deregister did.
	for k, c := range rows {
		m, ok := mirror[k]
		if assert.Truef(t, ok, "the mirror lost %v (%d rows and %d deletions failed)", k, failRows, failDels) {
			assert.Equalf(t, c.LastHeartbeat, m.LastHeartbeat, "the mirror's row of %v is old", k)
		}
	}
	for k := range mirror {
		if _, ok := rows[k]; !ok {
			assert.NotEqualf(t, presence.EventLeft, gone[k], "the mirror kept %v, deregistered (%d rows and %d deletions failed)", k, failRows, failDels)
		}
	}
}

// Limits hold with colliding keys under concurrency, and no place under
// them leaks: once everything has left, exactly the limit can register.
func TestSpillLimitsUnderChurn(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) {
			const limit, perGroup = 6, 3
			r := presence.New(presence.WithHashBits(bits), presence.WithMaxConsumers(limit), presence.WithMaxConsumersPerGroup(perGroup), presence.WithShards(2))
			var keys []presence.Key
			for i := range 16 {
				keys = append(keys, key("q", fmt.Sprint("g", i%3), fmt.Sprint(i)))
			}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 3))
					for n := range scale(5000) {
						k := keys[rng.IntN(len(keys))]
						switch rng.IntN(4) {
						case 0, 1:
							err := r.Heartbeat(k, 0, t0.Add(time.Duration(n)))
							if err != nil && !errors.Is(err, presence.ErrTooManyConsumers) && !errors.Is(err, presence.ErrGroupFull) {
								t.Error(err)
								return
							}
						case 2:
							r.Deregister(k)
						case 3:
							r.PruneExpired(t0.Add(time.Duration(n)), time.Duration(rng.IntN(3000)))
						}
					}
				}()
			}
			wg.Wait()
			rows := checkRows(t, r, r.Snapshot(t0, time.Hour))
			require.LessOrEqual(t, len(rows), limit)
			per := map[string]int{}
			for k := range rows {
				per[k.Group]++
			}
			for g, n := range per {
				require.LessOrEqualf(t, n, perGroup, "group %s", g)
			}
			for _, k := range keys {
				r.Deregister(k)
			}
			require.Zero(t, r.Len())
			g, q := r.IndexSizes()
			require.Zero(t, g+q, "index not empty")
			admitted := 0
			for i := range 10 {
				if r.Heartbeat(key("q", fmt.Sprint("h", i%3), fmt.Sprint(i)), 0, t0) == nil {
					admitted++
				}
			}
			require.Equal(t, limit, admitted, "places leaked under the limit")
		})
	}
}

// A checkpoint read into a registry whose keys collide, while its own
// consumers beat and leave, leaves no duplicate and loses no beat.
func TestSpillReadFromRacesBeats(t *testing.T) {
	for _, bits := range collidingBits {
		t.Run(fmt.Sprint("bits=", bits), func(t *testing.T) {
			src := presence.New()
			var keys []presence.Key
			for i := range 24 {
				k := key("q", fmt.Sprint("g", i%3), fmt.Sprint(i))
				keys = append(keys, k)
				beat(t, src, k, 1, t0.Add(-time.Minute))
			}
			var buf bytes.Buffer
			_, err := src.WriteTo(&buf)
			require.NoError(t, err)
			for range scale(50) {
				r := presence.New(presence.WithHashBits(bits), presence.WithShards(2))
				var wg sync.WaitGroup
				wg.Add(2)
				go func() {
					defer wg.Done()
					_, err := r.ReadFrom(bytes.NewReader(buf.Bytes()))
					assert.NoError(t, err)
				}()
				go func() {
					defer wg.Done()
					for i, k := range keys {
						if i%4 == 3 {
							r.Deregister(k)
							continue
						}
						assert.NoError(t, r.Heartbeat(k, 2, t0))
					}
				}()
				wg.Wait()
				rows := checkRows(t, r, r.Snapshot(t0, time.Hour))
				for i, k := range keys {
					c, ok := rows[k]
					if i%4 == 3 {
						continue // the checkpoint may restore it after it left
					}
					require.Truef(t, ok, "%v lost", k)
					require.Equalf(t, t0, c.LastHeartbeat, "%v: the checkpoint's older beat won", k)
				}
			}
		})
	}
}

// A MarkChanged that waits for the registration of a spilled key (see
// TestMarkChangedDuringRegistration) finds it in the spill and marks it; the
// spill must keep the entry's own strings as its map key, not the strings
// MarkChanged was given, which the caller may reuse.
func TestSpillMarkChangedDuringRegistrationKeepsNoCallerString(t *testing.T) {
	r := presence.New(presence.WithHashBits(0))
	beat(t, r, key("q", "g", "owner"), 0, t0) // holds the slot
	k := key("q", "g", "spilled")
	buf := []byte("qgspilled")
	marked := make(chan bool, 1)
	clear := onceAt(presence.HookJoined, func() {
		// Under k's bucket lock and the spill's mutex: MarkChanged misses
		// k in the shard and waits in its compute.
		go func() { marked <- r.MarkChanged(mutableKey(buf, 1, 1)) }()
		time.Sleep(50 * time.Millisecond)
	})
	beat(t, r, k, 0, t0)
	require.True(t, clear(), "the registration did not reach its pause point")
	assert.True(t, <-marked, "MarkChanged did not find the spilled consumer")
	copy(buf, "XXXXXXXXX") // the caller reuses its buffer
	checkModel(t, r, []presence.Key{k, key("q", "g", "owner")}, map[presence.Key]bool{k: true, key("q", "g", "owner"): true}, "after the buffer was reused")
	require.True(t, r.Deregister(k))
	_, ok := r.Lookup(k, t0, time.Hour)
	require.False(t, ok)
}
