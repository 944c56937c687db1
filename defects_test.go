package presence_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Every method of a zero Registry panics with a message that says what is
// wrong, not with an index out of range somewhere inside.
func TestZeroRegistryPanicsClearly(t *testing.T) {
	k := key("q", "g", "c")
	calls := map[string]func(r *presence.Registry){
		"Heartbeat":    func(r *presence.Registry) { _ = r.Heartbeat(k, 0, t0) },
		"Handle":       func(r *presence.Registry) { r.Handle(k) },
		"Deregister":   func(r *presence.Registry) { r.Deregister(k) },
		"PruneExpired": func(r *presence.Registry) { r.PruneExpired(t0, ttl) },
		"Snapshot":     func(r *presence.Registry) { r.Snapshot(t0, ttl) },
		"All": func(r *presence.Registry) {
			for range r.All(t0, ttl) {
			}
		},
		"Lookup":             func(r *presence.Registry) { r.Lookup(k, t0, ttl) },
		"SnapshotGroup":      func(r *presence.Registry) { r.SnapshotGroup(presence.GroupKey{}, t0, ttl) },
		"SnapshotQueue":      func(r *presence.Registry) { r.SnapshotQueue("q", t0, ttl) },
		"Stats":              func(r *presence.Registry) { r.Stats(t0, ttl) },
		"CountByGroup":       func(r *presence.Registry) { r.CountByGroup(t0, ttl) },
		"CountActiveByGroup": func(r *presence.Registry) { r.CountActiveByGroup(t0, ttl) },
		"Len":                func(r *presence.Registry) { r.Len() },
		"Subscribe":          func(r *presence.Registry) { r.Subscribe(1) },
		"Counters":           func(r *presence.Registry) { r.Counters() },
		"WriteTo":            func(r *presence.Registry) { _, _ = r.WriteTo(io.Discard) },
		"ReadFrom":           func(r *presence.Registry) { _, _ = r.ReadFrom(strings.NewReader("")) },
		"CollectChanged":     func(r *presence.Registry) { r.CollectChanged(func(presence.Consumer) {}) },
		"MarkChanged":        func(r *presence.Registry) { r.MarkChanged(k) },
		"MarkAllChanged":     func(r *presence.Registry) { r.MarkAllChanged() },
		"CollectDeleted":     func(r *presence.Registry) { r.CollectDeleted(func(presence.Key) {}) },
		"MarkDeleted":        func(r *presence.Registry) { r.MarkDeleted(k) },
		"Merge": func(r *presence.Registry) {
			_ = r.Merge(presence.Consumer{Key: k, RegisteredAt: t0, LastHeartbeat: t0})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				assert.Contains(t, msg, "presence: Registry used without New")
			}()
			call(&presence.Registry{})
		})
	}
}

// A zero or nil Subscription can be closed.
func TestZeroSubscriptionClose(t *testing.T) {
	var s presence.Subscription
	s.Close()
	s.Close()
	var nilSub *presence.Subscription
	nilSub.Close()
}

// A closed Ticks channel ends Sweeper.Run and Checkpointer.Run, the latter
// after a final save, instead of spinning on the closed channel.
func TestClosedTicksEndRun(t *testing.T) {
	r := presence.New()
	beat(t, r, key("q", "g", "c"), 0, t0)
	ticks := make(chan time.Time)
	close(ticks)
	sweeps := 0
	done := make(chan error, 2)
	go func() {
		done <- (&presence.Sweeper{Registry: r, Ticks: ticks, OnSweep: func(time.Time, int) { sweeps++ }}).Run(context.Background())
	}()
	path := filepath.Join(t.TempDir(), "ckpt")
	go func() {
		done <- (&presence.Checkpointer{Registry: r, Path: path, Ticks: ticks}).Run(context.Background())
	}()
	for range 2 {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("Run kept going after Ticks was closed")
		}
	}
	assert.Zero(t, sweeps, "a closed channel is not a tick")
	back := presence.New()
	require.NoError(t, (&presence.Checkpointer{Registry: back, Path: path}).Load())
	assert.Equal(t, 1, back.Len(), "Checkpointer.Run saves once more at the end")
}

// Keys up to MaxKeyBytes are accepted, and longer ones refused with
// ErrKeyTooLong, on every platform (the limit is one that a 32-bit platform
// can allocate).
func TestKeyLengthLimit(t *testing.T) {
	r := presence.New()
	long := strings.Repeat("x", presence.MaxKeyBytes/2)
	require.NoError(t, r.Heartbeat(key(long, long[:presence.MaxKeyBytes-len(long)], ""), 0, t0))
	err := r.Heartbeat(key(long, long, "xx"), 0, t0)
	require.ErrorIs(t, err, presence.ErrKeyTooLong)
	require.ErrorIs(t, r.Handle(key(long, long, "xx")).Heartbeat(0, t0), presence.ErrKeyTooLong)
	require.ErrorIs(t, r.Merge(presence.Consumer{Key: key(long, long, "xx"), RegisteredAt: t0, LastHeartbeat: t0}), presence.ErrKeyTooLong)
	// The longest key checkpoints and loads.
	var buf bytes.Buffer
	_, err = r.WriteTo(&buf)
	require.NoError(t, err)
	back := presence.New()
	_, err = back.ReadFrom(&buf)
	require.NoError(t, err)
	require.Equal(t, 1, back.Len())
}
