package presence_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/seed351623e9/presence"
)

// mapStore is a Backend in a few lines: one part (0), a map, and nothing
// that can fail or lose data. A real backend returns an error per batch it
// could not store and reports lost parts from Check; the Mirror does the
// rest: collection, batching, retries, resends and timing.
type mapStore struct {
	mu   sync.Mutex
	rows map[presence.Key]presence.Consumer
}

func (s *mapStore) PartOf(presence.GroupKey) int               { return 0 }
func (s *mapStore) Check(context.Context) []presence.PartCheck { return nil }

func (s *mapStore) Write(_ context.Context, batches []presence.Batch) []presence.BatchResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]presence.BatchResult, len(batches))
	for i, b := range batches {
		for _, k := range b.Deletes { // deletes first: a consumer may have come back
			delete(s.rows, k)
		}
		for _, c := range b.Writes {
			s.rows[c.Key] = c
		}
		out[i].Written = len(b.Writes)
	}
	return out
}

func (s *mapStore) Each(_ context.Context, fn func(presence.Consumer)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.rows {
		fn(c)
	}
	return nil
}

// A Mirror copies a registry into a Backend: each flush sends only what
// changed, and the deletes since the last one. In a broker, Mirror.Run
// flushes in the background; Restore reads the copy back at startup.
func ExampleMirror() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	reg := presence.New()
	store := &mapStore{rows: map[presence.Key]presence.Consumer{}}
	m := presence.NewMirror(reg, store, presence.MirrorOptions{})
	ctx := context.Background()

	a := presence.Key{Queue: "orders", Group: "billing", Consumer: "a"}
	b := presence.Key{Queue: "orders", Group: "billing", Consumer: "b"}
	_ = reg.Heartbeat(a, 1, now)
	_ = reg.Heartbeat(b, 0, now)
	r := m.Flush(ctx)
	fmt.Println("first flush:", r.Written, "written,", r.Deleted, "deleted")

	_ = reg.Heartbeat(a, 2, now.Add(time.Second))
	reg.Deregister(b)
	r = m.Flush(ctx)
	fmt.Println("second flush:", r.Written, "written,", r.Deleted, "deleted, err:", r.Err())

	restored := presence.New()
	n, _ := presence.NewMirror(restored, store, presence.MirrorOptions{}).Restore(ctx, now.Add(time.Second))
	rows := restored.Snapshot(now.Add(time.Second), presence.DefaultTTL)
	keys := make([]string, 0, len(rows))
	for _, c := range rows {
		keys = append(keys, fmt.Sprintf("%s/%s/%s leases=%d", c.Queue, c.Group, c.Consumer, c.Leases))
	}
	slices.Sort(keys)
	fmt.Println("restored", n, keys)
	// Output:
	// first flush: 2 written, 0 deleted
	// second flush: 1 written, 1 deleted, err: <nil>
	// restored 1 [orders/billing/a leases=2]
}
