package presence_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// leasesAt is the lease count the torn-read tests send with a beat at t. It
// is a function of the beat's time, so a row whose Leases is not
// leasesAt(LastHeartbeat) mixes two beats; a third of the beats carry 0, so
// LastActive is written on the drops too.
func leasesAt(t time.Time) uint32 { return uint32(t.UnixNano()/int64(time.Microsecond)) % 3 }

// checkRowConsistent asserts that c is one state of its consumer: times in
// order, and Leases those of the beat at LastHeartbeat.
func checkRowConsistent(c presence.Consumer) error {
	switch {
	case c.LastHeartbeat.Before(c.RegisteredAt):
		return fmt.Errorf("%q: LastHeartbeat %v before RegisteredAt %v", c.Key, c.LastHeartbeat, c.RegisteredAt)
	case c.LastActive.After(c.LastHeartbeat):
		return fmt.Errorf("%q: LastActive %v after LastHeartbeat %v", c.Key, c.LastActive, c.LastHeartbeat)
	case c.Leases != leasesAt(c.LastHeartbeat):
		return fmt.Errorf("%q: Leases %d are not those of the beat at %v (%d)", c.Key, c.Leases, c.LastHeartbeat, leasesAt(c.LastHeartbeat))
	case c.Leases > 0 && !c.LastActive.Equal(c.LastHeartbeat):
		return fmt.Errorf("%q: Leases %d but LastActive %v != LastHeartbeat %v", c.Key, c.Leases, c.LastActive, c.LastHeartbeat)
	}
	return nil
}

// beatUntil runs workers that heartbeat keys, by handle and by key, with
// times that step forwards per worker (so beats of one consumer race with
// each other) and leasesAt's lease counts, until stop is closed.
func beatUntil(r *presence.Registry, keys []presence.Key, workers int, stop <-chan struct{}, wg *sync.WaitGroup) {
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs := make([]*presence.Handle, len(keys))
			for i, k := range keys {
				hs[i] = r.Handle(k)
			}
			now := t0.Add(time.Duration(w) * time.Microsecond)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % len(keys)
				now = now.Add(time.Duration(1+n%5) * time.Microsecond)
				var err error
				if n%2 == 0 {
					err = hs[i].Heartbeat(leasesAt(now), now)
				} else {
					err = r.Heartbeat(keys[i], leasesAt(now), now)
				}
				if err != nil {
					panic(err)
				}
			}
		}()
	}
}

func tornKeys(n int) []presence.Key {
	keys := make([]presence.Key, n)
	for i := range keys {
		keys[i] = key("q", fmt.Sprint(i%7), fmt.Sprint(i))
	}
	return keys
}

// Every checkpoint saved while heartbeats with leases run loads, and every
// record in it is one state of its consumer. This is the way issue 9 saw it
// fail: records with LastActive after LastHeartbeat, refused on Load.
func TestCheckpointsUnderBeatsAlwaysLoad(t *testing.T) {
	dur := 2 * time.Second
	if testing.Short() {
		dur = 500 * time.Millisecond
	}
	r := presence.New()
	keys := tornKeys(64)
	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, leasesAt(t0), t0))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	beatUntil(r, keys, 3, stop, &wg)
	defer func() { close(stop); wg.Wait() }()

	cp := &presence.Checkpointer{Registry: r, Path: filepath.Join(t.TempDir(), "ckpt")}
	deadline := time.Now().Add(dur)
	saves, failures := 0, 0
	var firstErr error
	for time.Now().Before(deadline) {
		require.NoError(t, cp.Save())
		back := presence.New()
		err := (&presence.Checkpointer{Registry: back, Path: cp.Path}).Load()
		if err == nil {
			for _, c := range back.Snapshot(t0, time.Hour) {
				if err = checkRowConsistent(c); err != nil {
					break
				}
			}
		}
		if err == nil && back.Len() != len(keys) {
			err = fmt.Errorf("loaded %d consumers, want %d", back.Len(), len(keys))
		}
		saves++
		if err != nil {
			failures++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	require.Zerof(t, failures, "%d of %d checkpoints failed; first: %v", failures, saves, firstErr)
	require.Positive(t, saves)
}

// Every row read from a live entry, by any reader, is one state of it.
func TestRowsUnderBeatsAreConsistent(t *testing.T) {
	dur := time.Second
	if testing.Short() {
		dur = 300 * time.Millisecond
	}
	r := presence.New()
	keys := tornKeys(16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	beatUntil(r, keys, 3, stop, &wg)
	defer func() { close(stop); wg.Wait() }()

	var bad atomic.Int64
	var first atomic.Value
	check := func(c presence.Consumer) {
		if err := checkRowConsistent(c); err != nil {
			bad.Add(1)
			first.CompareAndSwap(nil, err.Error())
		}
	}
	reads := 0
	var buf bytes.Buffer
	for deadline := time.Now().Add(dur); time.Now().Before(deadline); reads++ {
		for _, c := range r.Snapshot(t0, time.Hour) {
			check(c)
		}
		for c := range r.All(t0, time.Hour) {
			check(c)
		}
		for _, c := range r.SnapshotGroup(presence.GroupKey{Queue: "q", Group: "1"}, t0, time.Hour) {
			check(c)
		}
		if c, ok := r.Lookup(keys[reads%len(keys)], t0, time.Hour); ok {
			check(c)
		}
		r.MarkAllChanged()
		r.CollectChanged(check)
		buf.Reset()
		_, err := r.WriteTo(&buf)
		require.NoError(t, err)
		back := presence.New()
		if _, err := back.ReadFrom(&buf); err != nil {
			bad.Add(1)
			first.CompareAndSwap(nil, err.Error())
		}
	}
	require.Zerof(t, bad.Load(), "%d torn rows in %d rounds of reads; first: %v", bad.Load(), reads, first.Load())
}
