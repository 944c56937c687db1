package presence_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// memBackend is an in-memory presence.Backend. A group's part is the
// number its name starts with ("0", "1"...); a part can be taken down,
// or wiped as a store that lost its data.
type memBackend struct {
	mu       sync.Mutex
	rows     map[presence.Key]presence.Consumer
	down     map[int]error // parts that fail every Check and Write
	badWrite map[int]error // parts that pass Check and fail Write
	wiped    map[int]bool  // parts that lost their data, until checked
	lostOnce map[int]bool  // parts whose next write reports a loss
	short    bool          // Write returns one result too few
	writes   map[int]int   // consumers written, by part
	attempts map[int]int   // batches received, by part
}

var errDown = errors.New("part down")

func newMemBackend() *memBackend {
	return &memBackend{
		rows: map[presence.Key]presence.Consumer{}, down: map[int]error{},
		badWrite: map[int]error{}, wiped: map[int]bool{}, lostOnce: map[int]bool{}, writes: map[int]int{}, attempts: map[int]int{},
	}
}

func partOf(group string) int {
	var p int
	_, _ = fmt.Sscanf(group, "%d", &p)
	return p
}

func (b *memBackend) PartOf(g presence.GroupKey) int { return partOf(g.Group) }

func (b *memBackend) Check(context.Context) []presence.PartCheck {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []presence.PartCheck
	for p, err := range b.down {
		out = append(out, presence.PartCheck{Part: p, Err: err})
	}
	for p := range b.wiped {
		if b.down[p] == nil {
			out = append(out, presence.PartCheck{Part: p, Lost: true})
			delete(b.wiped, p)
		}
	}
	return out
}

func (b *memBackend) Write(_ context.Context, batches []presence.Batch) []presence.BatchResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]presence.BatchResult, len(batches))
	for i, bt := range batches {
		b.attempts[bt.Part]++
		if err := cmp.Or(b.down[bt.Part], b.badWrite[bt.Part]); err != nil {
			out[i].Err = err
			continue
		}
		presence.ApplyBatch(b.rows, bt)
		b.writes[bt.Part] += len(bt.Writes)
		out[i] = presence.BatchResult{Written: len(bt.Writes), Lost: b.lostOnce[bt.Part]}
		delete(b.lostOnce, bt.Part)
	}
	if b.short && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out
}

func (b *memBackend) Each(_ context.Context, fn func(presence.Consumer)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.rows {
		fn(c)
	}
	return nil
}

func (b *memBackend) set(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn()
}

// wipe empties part p, as a store that restarted without its data.
func (b *memBackend) wipe(p int) {
	b.set(func() {
		for k := range b.rows {
			if partOf(k.Group) == p {
				delete(b.rows, k)
			}
		}
		b.wiped[p] = true
	})
}

// stored returns the stored keys of part p (every part if p < 0).
func (b *memBackend) stored(p int) map[presence.Key]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[presence.Key]time.Time{}
	for k, c := range b.rows {
		if p < 0 || partOf(k.Group) == p {
			out[k] = c.LastHeartbeat
		}
	}
	return out
}

// live returns the registry's keys of part p (every part if p < 0), as
// stored() does.
func live(r *presence.Registry, p int) map[presence.Key]time.Time {
	out := map[presence.Key]time.Time{}
	for _, c := range r.Snapshot(t0, time.Hour) {
		if p < 0 || partOf(c.Group) == p {
			out[c.Key] = c.LastHeartbeat
		}
	}
	return out
}

// fill registers n consumers in each of parts 0..parts-1, over two groups
// per part.
func fill(t *testing.T, r *presence.Registry, parts, n int) {
	for p := range parts {
		for i := range n {
			beat(t, r, key("q", fmt.Sprintf("%d-%d", p, i%2), fmt.Sprint(i)), 1, t0)
		}
	}
}

// A part that fails keeps what it did not take marked, while the healthy
// parts are written in the same flush; once it is back, the next flush
// sends it all.
func TestMirrorPartialFailure(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 3}) // several rounds
	fill(t, r, 3, 10)
	b.set(func() { b.down[1] = errDown })

	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), errDown)
	assert.Equal(t, map[int]error{1: errDown}, res.Failed)
	assert.Equal(t, 20, res.Written, "the healthy parts are written")
	assert.Equal(t, live(r, 0), b.stored(0))
	assert.Equal(t, live(r, 2), b.stored(2))
	assert.Empty(t, b.stored(1))
	b.set(func() { assert.Zero(t, b.attempts[1], "a part that failed its check is skipped") })

	b.set(func() { delete(b.down, 1) })
	res = m.Flush(context.Background())
	require.NoError(t, res.Err())
	assert.Equal(t, 10, res.Written, "only the failed part is resent")
	assert.Equal(t, live(r, -1), b.stored(-1))
	assert.Zero(t, m.Flush(context.Background()).Written, "nothing left marked")
}

// A part that fails in the middle of a flush, after some of its rounds
// were written, has the rest re-marked and resent.
func TestMirrorFailureMidFlush(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	fill(t, r, 2, 12)
	failAfter := &failingAfter{memBackend: b, part: 0, after: 1}
	m := presence.NewMirror(r, failAfter, presence.MirrorOptions{Batch: 4})
	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), errDown)
	assert.Equal(t, live(r, 1), b.stored(1))
	assert.NotEmpty(t, b.stored(0), "part 0's first round went through")
	assert.NotEqual(t, live(r, 0), b.stored(0))

	b.set(func() { assert.Equal(t, 2, b.attempts[0], "no batch after the one that failed") })

	failAfter.after = 1 << 30
	require.NoError(t, m.Flush(context.Background()).Err())
	assert.Equal(t, live(r, -1), b.stored(-1))
}

// Deletes in a batch that fails are recorded again and sent later.
func TestMirrorFailedDeletesResent(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	fill(t, r, 2, 8)
	f := &failingAfter{memBackend: b, part: 0, after: 1 << 30}
	m := presence.NewMirror(r, f, presence.MirrorOptions{Batch: 3})
	require.NoError(t, m.Flush(context.Background()).Err())
	for k := range live(r, -1) {
		require.True(t, r.Deregister(k))
	}
	f.after = f.rounds // part 0 fails on its first write, not at Check
	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), errDown)
	assert.Len(t, b.stored(0), 8)
	assert.Empty(t, b.stored(1))
	f.after = 1 << 30
	require.NoError(t, m.Flush(context.Background()).Err())
	assert.Empty(t, b.stored(-1), "every delete arrived")
}

// failingAfter fails part after its first `after` successful rounds.
type failingAfter struct {
	*memBackend
	part, after int
	rounds      int
}

func (f *failingAfter) Write(ctx context.Context, batches []presence.Batch) []presence.BatchResult {
	for _, bt := range batches {
		if bt.Part == f.part {
			if f.rounds >= f.after {
				f.set(func() { f.down[f.part] = errDown })
				defer f.set(func() { delete(f.down, f.part) })
			}
			f.rounds++
			break
		}
	}
	return f.memBackend.Write(ctx, batches)
}

// Deletes that a failed part did not take are recorded again, however many
// and whatever the batch size, and reach the store once it is back.
func TestMirrorDeletesNeverDropped(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 5})
	fill(t, r, 2, 20)
	require.NoError(t, m.Flush(context.Background()).Err())
	require.Len(t, b.stored(-1), 40)

	for k := range live(r, -1) {
		require.True(t, r.Deregister(k))
	}
	b.set(func() { b.down[0] = errDown })
	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), errDown)
	assert.Equal(t, 20, res.Deleted)
	assert.Empty(t, b.stored(1), "the healthy part took its deletes")
	assert.Len(t, b.stored(0), 20, "the failed part still holds its rows")

	require.ErrorIs(t, m.Flush(context.Background()).Err(), errDown, "still down")
	b.set(func() { delete(b.down, 0) })
	res = m.Flush(context.Background())
	require.NoError(t, res.Err())
	assert.Equal(t, 20, res.Deleted)
	assert.Empty(t, b.stored(-1))
}

// A part that lost its data, whether Check finds it or a write reports
// it, has every consumer resent, and only that part's.
func TestMirrorLossResendsPart(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{})
	fill(t, r, 3, 10)
	require.NoError(t, m.Flush(context.Background()).Err())

	b.wipe(2)
	res := m.Flush(context.Background())
	require.NoError(t, res.Err())
	assert.Equal(t, 1, res.Lost)
	assert.Equal(t, 10, res.Written, "part 2 only")
	assert.Equal(t, live(r, -1), b.stored(-1))

	// A write finds the loss: the part is resent at the next flush.
	b.wipe(1)
	b.set(func() { delete(b.wiped, 1); b.lostOnce[1] = true })
	beat(t, r, key("q", "1-0", "0"), 1, t0.Add(time.Second))
	res = m.Flush(context.Background())
	require.NoError(t, res.Err())
	assert.Equal(t, 1, res.Lost)
	assert.Len(t, b.stored(1), 1)
	res = m.Flush(context.Background())
	assert.Equal(t, 10, res.Written)
	assert.Equal(t, live(r, -1), b.stored(-1))
}

// A backend that returns too few results fails the batches it did not
// answer, which stay marked.
func TestMirrorShortResults(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{})
	fill(t, r, 2, 3)
	b.short = true
	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), presence.ErrBadBackend)
	assert.Len(t, res.Failed, 1)
	b.short = false
	require.NoError(t, m.Flush(context.Background()).Err())
	assert.Equal(t, live(r, -1), b.stored(-1))
}

// Restore merges what the backend holds into a registry.
func TestMirrorRestore(t *testing.T) {
	r := presence.New()
	b := newMemBackend()
	fill(t, r, 2, 4)
	require.NoError(t, presence.NewMirror(r, b, presence.MirrorOptions{}).Flush(context.Background()).Err())
	r2 := presence.New()
	n, err := presence.NewMirror(r2, b, presence.MirrorOptions{}).Restore(context.Background(), t0)
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	assert.Equal(t, live(r, -1), live(r2, -1))

	// Rows an hour ahead of the restoring clock are refused.
	n, err = presence.NewMirror(presence.New(), b, presence.MirrorOptions{}).Restore(context.Background(), t0.Add(-time.Hour))
	require.ErrorIs(t, err, presence.ErrFutureTime)
	assert.Zero(t, n)
}

// Heartbeats and deregistrations racing flushes, while parts go down and
// up: once everything is up and quiet, one flush leaves the store equal to
// the registry, newest heartbeat included. No heartbeat or delete is lost.
func TestMirrorConcurrent(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	r := presence.New()
	b := newMemBackend()
	m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 7})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds * 10 {
				k := key("q", fmt.Sprintf("%d-x", i%3), fmt.Sprint(i%17))
				if (i+w)%5 == 0 {
					r.Deregister(k)
					continue
				}
				_ = r.Heartbeat(k, 1, t0.Add(time.Duration(i)*time.Millisecond))
			}
		}()
	}
	for i := range rounds {
		b.set(func() {
			clear(b.down)
			if i%3 != 0 {
				b.down[i%3] = errDown
			}
			if i%11 == 0 {
				b.lostOnce[0] = true
			}
		})
		m.Flush(context.Background())
		if i%13 == 0 {
			b.wipe(2)
		}
	}
	wg.Wait()
	b.set(func() { clear(b.down) })
	require.NoError(t, m.Flush(context.Background()).Err())
	assert.Equal(t, live(r, -1), b.stored(-1))
}

// roundsBackend is a memBackend that records, for each call of Write, how
// many consumers and deletes it carried and the first element of each
// batch's Writes.
type roundsBackend struct {
	*memBackend
	items  []int
	arrays [][]*presence.Consumer
}

func (b *roundsBackend) Write(ctx context.Context, batches []presence.Batch) []presence.BatchResult {
	n := 0
	var firsts []*presence.Consumer
	for _, bt := range batches {
		n += len(bt.Writes) + len(bt.Deletes)
		if len(bt.Writes) > 0 {
			firsts = append(firsts, &bt.Writes[0])
		}
	}
	b.items = append(b.items, n)
	b.arrays = append(b.arrays, firsts)
	return b.memBackend.Write(ctx, batches)
}

// A round of Write carries at most Batch consumers and deletes, over all
// parts, and is sent as soon as it is full: Batch rows make one round,
// Batch+1 make two. Rounds counts the calls of Write and Batches the
// batches taken, one per part and round.
func TestMirrorFlushRounds(t *testing.T) {
	for _, tc := range []struct {
		parts, perPart  int
		rounds, batches int
	}{
		{1, 1, 1, 1},
		{1, 3, 1, 1},
		{1, 4, 2, 2},
		{1, 6, 2, 2},
		{1, 7, 3, 3},
		{2, 1, 1, 2}, // two parts share one round
		{2, 2, 2, 3}, // parts 0 0 1 | 1
	} {
		t.Run(fmt.Sprint(tc.parts, "x", tc.perPart), func(t *testing.T) {
			r := presence.New()
			b := &roundsBackend{memBackend: newMemBackend()}
			m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 3})
			for p := range tc.parts {
				for i := range tc.perPart {
					beat(t, r, key("q", fmt.Sprint(p), fmt.Sprint(i)), 1, t0)
				}
			}
			res := m.Flush(context.Background())
			require.NoError(t, res.Err())
			n := tc.parts * tc.perPart
			assert.Equal(t, tc.rounds, res.Rounds, "rounds")
			assert.Equal(t, tc.batches, res.Batches, "batches")
			assert.Equal(t, n, res.Written)
			assert.Len(t, b.items, tc.rounds)
			for i, items := range b.items {
				if i < len(b.items)-1 {
					assert.Equal(t, 3, items, "round %d is sent full", i)
				} else {
					assert.Equal(t, n-3*i, items, "the last round")
				}
			}
			assert.Equal(t, live(r, -1), b.stored(-1))

			// Deletes count the same way, and a part that fails takes no batch.
			for k := range live(r, -1) {
				require.True(t, r.Deregister(k))
			}
			b.items = nil
			res = m.Flush(context.Background())
			require.NoError(t, res.Err())
			assert.Equal(t, tc.rounds, res.Rounds, "rounds of deletes")
			assert.Equal(t, tc.batches, res.Batches, "batches of deletes")
			assert.Equal(t, n, res.Deleted)
			assert.Empty(t, b.stored(-1))
		})
	}

	r := presence.New()
	b := &roundsBackend{memBackend: newMemBackend()}
	m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 3})
	fill(t, r, 2, 4)
	b.set(func() { b.down[1] = errDown })
	res := m.Flush(context.Background())
	require.ErrorIs(t, res.Err(), errDown)
	assert.Equal(t, 2, res.Rounds, "part 0's four rows")
	assert.Equal(t, 2, res.Batches, "part 1 took none")
	assert.Equal(t, 4, res.Written)
}

// The Writes slices of settled batches are reused by later rounds, as
// Backend.Write's contract warns: with one part, the third round fills the
// array that the first round carried (the second round's was collected
// while the first was still in flight).
func TestMirrorReusesWrites(t *testing.T) {
	r := presence.New()
	b := &roundsBackend{memBackend: newMemBackend()}
	m := presence.NewMirror(r, b, presence.MirrorOptions{Batch: 2})
	for i := range 6 {
		beat(t, r, key("q", "0", fmt.Sprint(i)), 1, t0)
	}
	res := m.Flush(context.Background())
	require.NoError(t, res.Err())
	require.Equal(t, 3, res.Rounds)
	require.Len(t, b.arrays, 3)
	assert.Same(t, b.arrays[0][0], b.arrays[2][0], "round 3 reuses round 1's array")
	assert.NotSame(t, b.arrays[0][0], b.arrays[1][0])
	assert.Equal(t, live(r, -1), b.stored(-1))
}
