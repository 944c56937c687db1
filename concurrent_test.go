package presence_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// scale returns n, or a tenth of it under -short.
func scale(n int) int {
	if testing.Short() {
		return max(n/10, 1)
	}
	return n
}

// forHashes runs test as it is, and again with every key's hash cut to 3
// bits (WithHashBits), so that keys collide and take the shards' spill.
func forHashes(t *testing.T, test func(t *testing.T, hash ...presence.Option)) {
	t.Run("hash=full", func(t *testing.T) { test(t) })
	t.Run("hash=3bits", func(t *testing.T) { test(t, presence.WithHashBits(3)) })
}

// checkRows asserts the invariants of a quiescent snapshot: no key twice,
// and Len agreeing with it.
func checkRows(t *testing.T, r *presence.Registry, rows []presence.Consumer) map[presence.Key]presence.Consumer {
	t.Helper()
	seen := make(map[presence.Key]presence.Consumer, len(rows))
	for _, c := range rows {
		if _, dup := seen[c.Key]; dup {
			t.Errorf("duplicate row for %q", c.Key)
		}
		seen[c.Key] = c
		if c.LastHeartbeat.Before(c.RegisteredAt) {
			t.Errorf("%q: LastHeartbeat %v before RegisteredAt %v", c.Key, c.LastHeartbeat, c.RegisteredAt)
		}
	}
	assert.Equal(t, len(rows), r.Len(), "Len agrees with the snapshot")
	return seen
}

// No heartbeat is lost to a prune of the same consumer. Each round registers
// consumers with an ancient heartbeat, then heartbeats them with a fresh
// time while another goroutine prunes. The fresh time is never expired, so
// every consumer must survive with it, whoever wins each race.
func TestNoLostHeartbeatUnderPrune(t *testing.T) {
	forHashes(t, testNoLostHeartbeatUnderPrune)
}

func testNoLostHeartbeatUnderPrune(t *testing.T, hash ...presence.Option) {
	const perRound = 64
	rounds := scale(300)
	r := presence.New(append(hash, presence.WithShards(2))...)
	ancient := t0.Add(-time.Hour)
	for round := 0; round < rounds; round++ {
		now := t0.Add(time.Duration(round) * time.Second)
		keys := make([]presence.Key, perRound)
		for i := range keys {
			keys[i] = key("q", fmt.Sprint(round), fmt.Sprint(i))
			require.NoError(t, r.Heartbeat(keys[i], 0, ancient))
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			r.PruneExpired(now, ttl)
		}()
		for w := 0; w < 2; w++ {
			go func() {
				defer wg.Done()
				<-start
				for i := w; i < perRound; i += 2 {
					if err := r.Heartbeat(keys[i], uint32(round), now); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		rows := checkRows(t, r, r.Snapshot(now, ttl))
		for _, k := range keys {
			c, ok := rows[k]
			if !ok {
				t.Fatalf("round %d: heartbeat for %q lost to a concurrent prune", round, k)
			}
			if !c.LastHeartbeat.Equal(now) {
				t.Fatalf("round %d: %q has LastHeartbeat %v, want %v", round, k, c.LastHeartbeat, now)
			}
		}
		r.PruneExpired(now.Add(time.Hour), ttl) // clear the round
	}
}

// Concurrent beats of one consumer never move LastHeartbeat backwards, as
// seen by a concurrent reader, and the lease count left at the end is the
// one sent with the newest beat.
func TestHeartbeatIsMonotonic(t *testing.T) {
	r := presence.New()
	k := key("q", "g", "c")
	h := r.Handle(k)
	writers, beats := 4, scale(20000)
	var maxSent atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})

	readerErr := make(chan error, 1)
	go func() {
		var last time.Time
		for {
			select {
			case <-done:
				readerErr <- nil
				return
			default:
			}
			for _, c := range r.Snapshot(t0, ttl) {
				if c.LastHeartbeat.Before(last) {
					readerErr <- fmt.Errorf("LastHeartbeat went back from %v to %v", last, c.LastHeartbeat)
					return
				}
				last = c.LastHeartbeat
			}
		}
	}()

	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < beats; i++ {
				// Distinct times across writers, jittering backwards and forwards;
				// the lease count encodes the time it was sent with.
				off := int64(rng.IntN(1<<20))*int64(writers) + int64(seed)
				var err error
				if i%2 == 0 {
					err = h.Heartbeat(uint32(off), t0.Add(time.Duration(off)))
				} else {
					err = r.Heartbeat(k, uint32(off), t0.Add(time.Duration(off)))
				}
				if err != nil {
					t.Error(err)
					return
				}
				for {
					m := maxSent.Load()
					if off <= m || maxSent.CompareAndSwap(m, off) {
						break
					}
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	close(done)
	require.NoError(t, <-readerErr)

	rows := r.Snapshot(t0, ttl)
	require.Len(t, rows, 1)
	want := maxSent.Load()
	assert.Equal(t, t0.Add(time.Duration(want)), rows[0].LastHeartbeat, "the newest beat wins")
	assert.Equal(t, uint32(want), rows[0].Leases, "leases come from the newest beat")
}

// After concurrent mixed operations quiesce: no duplicate rows, Len equals
// the snapshot's length, and every consumer's final beat is reflected.
func TestMixedOperationsQuiesce(t *testing.T) {
	forHashes(t, testMixedOperationsQuiesce)
}

func testMixedOperationsQuiesce(t *testing.T, hash ...presence.Option) {
	r := presence.New(append(hash, presence.WithShards(4))...)
	keys := make([]presence.Key, 48)
	for i := range keys {
		keys[i] = key(fmt.Sprint("q", i%3), fmt.Sprint("g", i%2), fmt.Sprint(i))
	}
	ops := scale(20000)
	var clock atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 2))
			handles := map[int]*presence.Handle{}
			for i := 0; i < ops; i++ {
				ki := rng.IntN(len(keys))
				now := t0.Add(time.Duration(clock.Add(1)) * time.Millisecond)
				switch op := rng.IntN(10); {
				case op < 4:
					assert.NoError(t, r.Heartbeat(keys[ki], uint32(i), now))
				case op < 7:
					h := handles[ki]
					if h == nil {
						h = r.Handle(keys[ki])
						handles[ki] = h
					}
					assert.NoError(t, h.Heartbeat(uint32(i), now))
				case op < 8:
					r.Deregister(keys[ki])
				case op < 9:
					// Expire whatever has not beaten in the last ~100 ops.
					r.PruneExpired(now, 25*time.Millisecond)
				default:
					seen := map[presence.Key]bool{}
					for _, c := range r.Snapshot(now, ttl) {
						if seen[c.Key] {
							t.Errorf("duplicate row for %q in a concurrent snapshot", c.Key)
						}
						seen[c.Key] = true
					}
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	now := t0.Add(time.Duration(clock.Load()+1) * time.Millisecond)
	checkRows(t, r, r.Snapshot(now, ttl))

	// One final beat each: all present, exactly once.
	for i, k := range keys {
		require.NoError(t, r.Heartbeat(k, uint32(i), now))
	}
	rows := checkRows(t, r, r.Snapshot(now, ttl))
	assert.Len(t, rows, len(keys))
	for i, k := range keys {
		assert.Equal(t, uint32(i), rows[k].Leases)
		assert.True(t, rows[k].LastHeartbeat.Equal(now))
	}
}

// Handles keep working while their consumers are deregistered and pruned
// under them: after the removers stop, one more beat through each handle
// makes every consumer present exactly once, with that beat's time.
func TestHandlesRaceRemoval(t *testing.T) {
	forHashes(t, testHandlesRaceRemoval)
}

func testHandlesRaceRemoval(t *testing.T, hash ...presence.Option) {
	r := presence.New(append(hash, presence.WithShards(2))...)
	n := 32
	handles := make([]*presence.Handle, n)
	for i := range handles {
		handles[i] = r.Handle(key("q", "g", fmt.Sprint(i)))
	}
	var clock atomic.Int64
	stop := make(chan struct{})
	var removers, beaters sync.WaitGroup
	var removed atomic.Int64
	removers.Add(2)
	go func() {
		defer removers.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r.Deregister(handles[rng.IntN(n)].Key()) {
				removed.Add(1)
			}
		}
	}()
	go func() {
		defer removers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Everything beaten more than a few ticks ago is expired.
			now := t0.Add(time.Duration(clock.Load()) * time.Millisecond)
			removed.Add(int64(r.PruneExpired(now, time.Millisecond)))
		}
	}()
	beats := scale(20000)
	// The beaters go on past their count until a remover has removed
	// something (on a loaded machine the removers may not have run yet),
	// for at most 10 s; the check below fails if they never did.
	give := time.Now().Add(10 * time.Second)
	for w := 0; w < 2; w++ {
		beaters.Add(1)
		go func() {
			defer beaters.Done()
			for i := 0; i < beats || removed.Load() == 0 && time.Now().Before(give); i++ {
				now := t0.Add(time.Duration(clock.Add(1)) * time.Millisecond)
				if err := handles[(i*2+w)%n].Heartbeat(1, now); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	beaters.Wait()
	close(stop)
	removers.Wait()
	require.Positive(t, removed.Load(), "the removers raced the handles")

	final := t0.Add(time.Duration(clock.Add(1)) * time.Millisecond)
	for i, h := range handles {
		require.NoError(t, h.Heartbeat(uint32(i), final))
	}
	rows := checkRows(t, r, r.Snapshot(final, ttl))
	require.Len(t, rows, n)
	for i, h := range handles {
		c := rows[h.Key()]
		assert.Equal(t, uint32(i), c.Leases)
		assert.True(t, c.LastHeartbeat.Equal(final))
	}
}

// With a limit, concurrent registrations never overshoot it, and removals
// give slots back.
func TestMaxConsumersUnderConcurrency(t *testing.T) {
	const limit = 50
	r := presence.New(presence.WithMaxConsumers(limit), presence.WithShards(8))
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < scale(2000); i++ {
				k := key("q", "g", fmt.Sprint(w, "-", i%100))
				switch err := r.Heartbeat(k, 0, t0); err {
				case nil:
					ok.Add(1)
				case presence.ErrTooManyConsumers:
					full.Add(1)
				default:
					t.Error(err)
				}
				if i%7 == 0 {
					r.Deregister(k)
				}
			}
		}()
	}
	wg.Wait()
	// Len sums per-shard counters and is only weakly consistent while
	// registrations and removals race, so the bound is checked at rest.
	assert.LessOrEqual(t, len(checkRows(t, r, r.Snapshot(t0, ttl))), limit)
	assert.Positive(t, full.Load())
	assert.Positive(t, ok.Load())

	// Racing registrations of distinct consumers, no removals: exactly
	// limit succeed, however they interleave.
	r = presence.New(presence.WithMaxConsumers(limit), presence.WithShards(8))
	ok.Store(0)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if r.Heartbeat(key("q", fmt.Sprint(w), fmt.Sprint(i)), 0, t0) == nil {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, limit, ok.Load())
	assert.Equal(t, limit, r.Len())
}

// Racing beats of one consumer leave the lease count of the newest beat:
// an older beat that landed its time first never overwrites the leases of a
// newer one. Each round races a few single beats on a fresh consumer.
func TestLeasesFollowNewestBeat(t *testing.T) {
	r := presence.New()
	writers := 4
	for round := 0; round < scale(3000); round++ {
		k := key("q", "g", fmt.Sprint(round))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := 1; w <= writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := r.Heartbeat(k, uint32(w), t0.Add(time.Duration(w))); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		c, ok := lookup(t, r, k, t0)
		require.True(t, ok)
		require.Equal(t, t0.Add(time.Duration(writers)), c.LastHeartbeat, "round %d", round)
		require.Equal(t, uint32(writers), c.Leases, "round %d: leases of an older beat won", round)
		r.Deregister(k)
	}
}
