// Package benchkit is the one benchmark harness of the project. Its
// workloads are plain func(*testing.B) values, so that bench_test.go runs
// them as sub-benchmarks for go test -bench and benchstat, and
// cmd/presencebench runs the very same code through testing.Benchmark,
// alternating implementations round by round.
package benchkit

import (
	"errors"
	"fmt"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/mutexreg"
	"github.com/seed351623e9/presence/internal/nanotime"
	"github.com/seed351623e9/presence/internal/syncmapreg"
)

// Registry is the method set every implementation offers.
type Registry interface {
	Heartbeat(k presence.Key, leases uint32, now time.Time) error
	Snapshot(now time.Time, ttl time.Duration) []presence.Consumer
	CountActiveByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]int
	PruneExpired(now time.Time, ttl time.Duration) int
	Len() int
}

// Beater is a handle: a heartbeat bound to one consumer.
type Beater interface {
	Heartbeat(leases uint32, now time.Time) error
}

// Impl is one implementation under test.
type Impl struct {
	Name string
	// Empty returns an empty registry sized for about presize consumers.
	// It is nil for the speed of light, which cannot register.
	Empty func(presize int) Registry
	// Build, when set, replaces Empty plus heartbeats in New.
	Build func(keys []presence.Key, t time.Time) Registry
	// Handle returns r's handle for k.
	Handle func(r Registry, k presence.Key) Beater
	// RefreshOnly marks an implementation that cannot register, remove or
	// read: the speed of light, which bounds refreshes only.
	RefreshOnly bool
}

// New returns a registry of implementation i holding keys, each registered
// at t.
func (i Impl) New(keys []presence.Key, t time.Time) Registry {
	if i.Build != nil {
		return i.Build(keys, t)
	}
	r := i.Empty(len(keys))
	for _, k := range keys {
		if err := r.Heartbeat(k, 0, t); err != nil {
			panic(err) // benchmark setup: keys are valid and unlimited
		}
	}
	return r
}

// Registry is the library.
var RegistryImpl = Impl{
	Name:   "registry",
	Empty:  func(n int) Registry { return presence.New(presence.WithPresize(n)) },
	Handle: func(r Registry, k presence.Key) Beater { return r.(*presence.Registry).Handle(k) },
}

// MutexImpl is the fair baseline: sync.Mutex around a map of pointer
// entries, one lookup per refresh (internal/mutexreg).
var MutexImpl = Impl{
	Name:   "mutex",
	Empty:  func(n int) Registry { return mutexreg.NewSized(n) },
	Handle: func(r Registry, k presence.Key) Beater { return r.(*mutexreg.Registry).Handle(k) },
}

// SyncMapImpl is the registry's entries on one sync.Map.
var SyncMapImpl = Impl{
	Name:  "syncmap",
	Empty: func(int) Registry { return syncmapreg.New() },
	Handle: func(r Registry, k presence.Key) Beater {
		return keyBeater{r, k}
	},
}

type keyBeater struct {
	r Registry
	k presence.Key
}

func (b keyBeater) Heartbeat(leases uint32, now time.Time) error {
	return b.r.Heartbeat(b.k, leases, now)
}

// SOLImpl is the speed of light: a read-only Go map of entry pointers, built
// up front, and the registry's own entry update. No keyed refresh of any
// design can beat a lookup in Go's built-in map followed by the same atomic
// operations; a handle refresh cannot beat the atomic operations alone.
var SOLImpl = Impl{
	Name:        "sol",
	RefreshOnly: true,
	Build: func(keys []presence.Key, t time.Time) Registry {
		m := make(map[presence.Key]*entry.Entry, len(keys))
		for _, k := range keys {
			// Keyed by the entry's own copy of the strings, as any registry
			// that must not keep its callers' memory is.
			e := entry.New(k.Queue, k.Group, k.Consumer, nanotime.FromTime(t), 0)
			q, g, c := e.Key()
			m[presence.Key{Queue: q, Group: g, Consumer: c}] = e
		}
		return sol(m)
	},
	Handle: func(r Registry, k presence.Key) Beater { return solHandle{r.(sol)[k]} },
}

// ErrRefreshOnly is returned by the speed of light for anything but a
// refresh of a key it was built with.
var ErrRefreshOnly = errors.New("benchkit: the speed of light only refreshes")

type sol map[presence.Key]*entry.Entry

func (s sol) Heartbeat(k presence.Key, leases uint32, now time.Time) error {
	if e := s[k]; e != nil && e.Refresh(nanotime.FromTime(now), leases) {
		return nil
	}
	return ErrRefreshOnly
}
func (s sol) Snapshot(time.Time, time.Duration) []presence.Consumer { return nil }
func (s sol) CountActiveByGroup(time.Time, time.Duration) map[presence.GroupKey]int {
	return nil
}
func (s sol) PruneExpired(time.Time, time.Duration) int { return 0 }
func (s sol) Len() int                                  { return len(s) }

type solHandle struct{ e *entry.Entry }

func (h solHandle) Heartbeat(leases uint32, now time.Time) error {
	if h.e.Refresh(nanotime.FromTime(now), leases) {
		return nil
	}
	return ErrRefreshOnly
}

// Impls lists every implementation, the library first.
var Impls = []Impl{RegistryImpl, MutexImpl, SyncMapImpl, SOLImpl}

// Shape is how a workload's keys spread over queues and groups.
type Shape string

const (
	// Grouped is a broker's usual shape: 100 consumers a group, 10 groups
	// a queue.
	Grouped Shape = "grouped"
	// Solo is one consumer per group and one group per queue, as with a
	// queue per device.
	Solo Shape = "solo"
	// Seed is the key shape of the seed's own benchmark (shared/seedbench):
	// queue q{i%10}, group g{i%5}, consumer c{i}.
	Seed Shape = "seed"
)

// Keys returns the keys numbered [from, from+n) of shape s.
func (s Shape) Keys(from, n int) []presence.Key {
	keys := make([]presence.Key, n)
	for i := range keys {
		j := from + i
		switch s {
		case Solo:
			keys[i] = presence.Key{Queue: fmt.Sprintf("queue-%07d", j), Group: "group-0", Consumer: fmt.Sprintf("consumer-%07d", j)}
		case Seed:
			keys[i] = presence.Key{Queue: fmt.Sprintf("q%d", j%10), Group: fmt.Sprintf("g%d", j%5), Consumer: fmt.Sprintf("c%d", j)}
		default:
			keys[i] = presence.Key{
				Queue:    fmt.Sprintf("queue-%04d", j/1000),
				Group:    fmt.Sprintf("group-%d", j/100%10),
				Consumer: fmt.Sprintf("consumer-%07d", j),
			}
		}
	}
	return keys
}

// Keys returns n distinct keys of the Grouped shape.
func Keys(n int) []presence.Key { return Grouped.Keys(0, n) }

// KeyBytes is the total length of the keys' strings.
func KeyBytes(keys []presence.Key) int {
	n := 0
	for _, k := range keys {
		n += len(k.Queue) + len(k.Group) + len(k.Consumer)
	}
	return n
}
