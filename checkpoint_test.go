package presence_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

func checkpoint(t *testing.T, r *presence.Registry) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := r.WriteTo(&buf)
	require.NoError(t, err)
	require.EqualValues(t, buf.Len(), n)
	return buf.Bytes()
}

// onlyReader hides every method but Read, so that ReadFrom takes its
// non-seeking path.
type onlyReader struct{ io.Reader }

func TestCheckpointRoundTrip(t *testing.T) {
	for _, seekable := range []bool{true, false} {
		t.Run(fmt.Sprint("seekable=", seekable), func(t *testing.T) {
			r := presence.New()
			populate(t, r)
			beat(t, r, key("orders", "workers", "w0"), 0, t0.Add(time.Second)) // LastActive kept at t0
			beat(t, r, key("\x00", "", "\xff"), 9, yearOne)                    // odd key, clamped time
			data := checkpoint(t, r)

			r2 := presence.New()
			var in io.Reader = bytes.NewReader(data)
			if !seekable {
				in = onlyReader{in}
			}
			n, err := r2.ReadFrom(in)
			require.NoError(t, err)
			assert.EqualValues(t, len(data), n)
			assert.Equal(t, r.Snapshot(t0, ttl), r2.Snapshot(t0, ttl), "a checkpoint restores every field")
		})
	}
}

func TestCheckpointOfEmptyRegistry(t *testing.T) {
	data := checkpoint(t, presence.New())
	r := presence.New()
	_, err := r.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Zero(t, r.Len())
}

func TestReadFromMergesWithoutGoingBackwards(t *testing.T) {
	old := presence.New()
	k := key("q", "g", "c")
	beat(t, old, k, 3, t0) // registered early, active at t0
	beat(t, old, key("q", "g", "only-old"), 1, t0)
	data := checkpoint(t, old)

	r := presence.New()
	beat(t, r, k, 0, t0.Add(time.Minute)) // registered later, beat later, no leases
	_, err := r.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)

	c, ok := r.Lookup(k, t0, ttl)
	require.True(t, ok)
	assert.True(t, c.RegisteredAt.Equal(t0), "the earlier registration wins")
	assert.True(t, c.LastHeartbeat.Equal(t0.Add(time.Minute)), "the later heartbeat wins")
	assert.EqualValues(t, 0, c.Leases, "leases follow the later heartbeat")
	assert.True(t, c.LastActive.Equal(t0), "the later LastActive wins")
	_, ok = r.Lookup(key("q", "g", "only-old"), t0, ttl)
	assert.True(t, ok, "consumers only in the checkpoint are restored")

	// Merging the same checkpoint again changes nothing.
	before := r.Snapshot(t0, ttl)
	_, err = r.ReadFrom(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, before, r.Snapshot(t0, ttl))
}

func TestReadFromRejectsDamageAndChangesNothing(t *testing.T) {
	src := presence.New()
	for i := 0; i < 3000; i++ { // several blocks
		beat(t, src, key("queue", fmt.Sprint("group-", i%10), fmt.Sprint("consumer-", i)), uint32(i), t0)
	}
	data := checkpoint(t, src)

	cases := map[string][]byte{
		"empty":          {},
		"magic only":     data[:8],
		"header only":    data[:12],
		"truncated":      data[:len(data)/2],
		"no trailer":     data[:len(data)-16],
		"short trailer":  data[:len(data)-1],
		"wrong magic":    append([]byte("PRESENCX"), data[8:]...),
		"future version": append(append([]byte("PRESENCE"), 3, 0, 0, 0), data[12:]...),
	}
	for _, off := range []int{12, 20, len(data) / 3, len(data) - 20, len(data) - 3} {
		flipped := bytes.Clone(data)
		flipped[off] ^= 0x40
		cases[fmt.Sprint("bit flip at ", off)] = flipped
	}
	for name, bad := range cases {
		for _, seekable := range []bool{true, false} {
			r := presence.New()
			beat(t, r, key("queue", "group-1", "consumer-1"), 77, t0.Add(time.Hour))
			before := r.Snapshot(t0, ttl)
			var in io.Reader = bytes.NewReader(bad)
			if !seekable {
				in = onlyReader{in}
			}
			_, err := r.ReadFrom(in)
			assert.ErrorIs(t, err, presence.ErrBadCheckpoint, "%s (seekable=%v)", name, seekable)
			assert.Equal(t, before, r.Snapshot(t0, ttl), "%s changed the registry", name)
		}
	}
}

func TestReadFromRespectsLimits(t *testing.T) {
	src := presence.New()
	for i := 0; i < 5; i++ {
		beat(t, src, key("q", "g", fmt.Sprint(i)), 0, t0)
	}
	r := presence.New(presence.WithMaxConsumers(3))
	_, err := r.ReadFrom(bytes.NewReader(checkpoint(t, src)))
	assert.ErrorIs(t, err, presence.ErrTooManyConsumers)
	assert.Contains(t, err.Error(), "2 consumers not restored")
	assert.Equal(t, 3, r.Len())
}

// WriteTo reports a failing writer's error.
func TestWriteToFailingWriter(t *testing.T) {
	r := presence.New()
	populate(t, r)
	boom := errors.New("disk full")
	_, err := r.WriteTo(failAfter{n: 20, err: boom})
	assert.ErrorIs(t, err, boom)
}

type failAfter struct {
	n   int
	err error
}

func (f failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return f.n, f.err
	}
	return len(p), nil
}

// FuzzReadFrom feeds arbitrary bytes to ReadFromAt at an arbitrary now. A
// rejected input changes nothing; an accepted one, or one accepted but for
// rows from the future, leaves only rows whose times are in order and none
// that the reader's clock proves wrong, and round-trips through a fresh
// registry.
func FuzzReadFrom(f *testing.F) {
	r := presence.New()
	beat := func(k presence.Key, l uint32, at time.Time) { _ = r.Heartbeat(k, l, at) }
	beat(key("q", "g", "c"), 1, t0)
	beat(key("", "\x00", "日本"), 0, yearOne)
	beat(key("q", "g", "ahead"), 0, t0.Add(time.Hour))
	var buf bytes.Buffer
	_, _ = r.WriteTo(&buf)
	now := t0.UnixNano()
	f.Add(buf.Bytes(), now)                                        // a valid checkpoint, one row an hour ahead
	f.Add(buf.Bytes(), now+int64(time.Hour))                       // the same, read an hour later
	f.Add(buf.Bytes()[:len(buf.Bytes())-5], now)                   // truncated in the trailer
	f.Add([]byte("PRESENCE\x01\x00\x00\x00\x00\x00\x00\x00"), now) // header, then a trailer cut short
	f.Fuzz(func(t *testing.T, data []byte, nowNanos int64) {
		now := time.Unix(0, nowNanos)
		r := presence.New()
		own := key("q", "g", "own")
		_ = r.Heartbeat(own, 5, now)
		before := r.Snapshot(t0, ttl)
		_, err := r.ReadFromAt(bytes.NewReader(data), now)
		switch {
		case errors.Is(err, presence.ErrBadCheckpoint):
			if !assert.ObjectsAreEqual(before, r.Snapshot(t0, ttl)) {
				t.Fatal("a rejected checkpoint changed the registry")
			}
			return
		case err != nil && !errors.Is(err, presence.ErrFutureTime):
			t.Fatalf("unexpected error kind: %v", err)
		}
		for _, c := range r.Snapshot(now, ttl) {
			if c.RegisteredAt.After(c.LastHeartbeat) || c.LastActive.After(c.LastHeartbeat) {
				t.Fatalf("row with times out of order: %+v", c)
			}
			if c.Key != own && aheadOf(c.LastHeartbeat, now) {
				t.Fatalf("restored a heartbeat from the future: %+v at %v", c, now)
			}
		}
		// Accepted: it must round-trip through a fresh registry.
		var out bytes.Buffer
		if _, err := r.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		r2 := presence.New()
		if _, err := r2.ReadFrom(bytes.NewReader(out.Bytes())); err != nil {
			t.Fatalf("re-reading our own checkpoint: %v", err)
		}
		if !assert.ObjectsAreEqual(r.Snapshot(t0, ttl), r2.Snapshot(t0, ttl)) {
			t.Fatal("checkpoint did not round-trip")
		}
	})
}
