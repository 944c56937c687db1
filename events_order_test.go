package presence_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// One key's events arrive in the order the registry applied them, whatever
// goroutines race: Joined, then any Stale and Revived, then Expired or Left,
// then Joined again. So membership rebuilt from the events is the
// registry's.
func TestEventsOfOneKeyArriveInOrder(t *testing.T) {
	t.Run("hash=full", func(t *testing.T) { testEventsOfOneKeyArriveInOrder(t) })
	// Both keys share one hash: one holds the shard map's slot, the
	// other the spill, and the Stale and Revived of a prune pass are
	// emitted through the spill's compute.
	t.Run("hash=0bits", func(t *testing.T) { testEventsOfOneKeyArriveInOrder(t, presence.WithHashBits(0)) })
}

func testEventsOfOneKeyArriveInOrder(t *testing.T, hash ...presence.Option) {
	dur := time.Second
	if testing.Short() {
		dur = 200 * time.Millisecond
	}
	r := presence.New(append(hash, presence.WithShards(1))...)
	sub := r.Subscribe(1 << 14)
	keys := []presence.Key{key("q", "g", "a"), key("q", "g", "b")}

	// The reader rebuilds membership as the events come.
	members := map[presence.Key]bool{}
	var bad []string
	n := 0
	read := make(chan struct{})
	go func() {
		defer close(read)
		for ev := range sub.C {
			n++
			in := members[ev.Key]
			switch {
			case ev.Kind == presence.EventJoined && in:
				bad = append(bad, fmt.Sprintf("event %d: %v joined twice", n, ev.Key))
			case ev.Kind != presence.EventJoined && !in:
				bad = append(bad, fmt.Sprintf("event %d: %v %v while absent", n, ev.Key, ev.Kind))
			}
			members[ev.Key] = ev.Kind != presence.EventExpired && ev.Kind != presence.EventLeft
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(f func(n int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				for len(sub.C) > cap(sub.C)/2 { // let the reader keep up: no drops
					runtime.Gosched()
				}
				f(n)
			}
		}()
	}
	for w := range 2 {
		run(func(n int) { _ = r.Heartbeat(keys[(n+w)%2], 0, t0.Add(time.Duration(n%3)*time.Minute)) })
	}
	run(func(n int) { r.Deregister(keys[n%2]) })
	run(func(n int) { r.PruneExpired(t0.Add(time.Duration(n%4)*time.Minute), 20*time.Second) })
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	sub.Close()
	<-read
	require.Zero(t, sub.Dropped())
	require.Emptyf(t, bad, "%d of %d events out of order; first: %v", len(bad), n, bad[:min(len(bad), 3)])
	for _, k := range keys {
		_, ok := r.Lookup(k, t0, time.Hour)
		require.Equal(t, ok, members[k], "membership rebuilt from events disagrees for %v", k)
	}
}
