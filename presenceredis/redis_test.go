package presenceredis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

const ttl = 30 * time.Second

func key(q, g, c string) presence.Key { return presence.Key{Queue: q, Group: g, Consumer: c} }

func fill(t *testing.T, r *presence.Registry, n int, leases uint32, at time.Time) []presence.Key {
	keys := make([]presence.Key, n)
	for i := range keys {
		keys[i] = key(fmt.Sprint("queue-", i%3), fmt.Sprint("group-", i%7), fmt.Sprint("consumer-", i))
		require.NoError(t, r.Heartbeat(keys[i], leases, at))
	}
	return keys
}

// rowsEqual compares the stored fields of two snapshots.
func rowsEqual(t *testing.T, want, got []presence.Consumer) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	for i := range want {
		w, g := want[i], got[i]
		assert.Equal(t, w.Key, g.Key)
		assert.True(t, w.RegisteredAt.Equal(g.RegisteredAt), "%q registered", w.Key)
		assert.True(t, w.LastHeartbeat.Equal(g.LastHeartbeat), "%q heartbeat", w.Key)
		assert.True(t, w.LastActive.Equal(g.LastActive), "%q active", w.Key)
		assert.Equal(t, w.Leases, g.Leases, "%q leases", w.Key)
	}
}

func TestFlushSendsOnlyChanges(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	keys := fill(t, r, 1000, 0, t0)
	m := New(r, s.client(t), Options{})

	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1000, st.Consumers)
	st, err = m.Flush(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Consumers, "nothing changed")

	for i := 0; i < 100; i++ {
		for j := 0; j < 50; j++ { // many beats, one write
			require.NoError(t, r.Heartbeat(keys[i], 1, t0.Add(time.Duration(j+1)*time.Millisecond)))
		}
	}
	st, err = m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 100, st.Consumers, "one write per changed consumer, however many beats")

	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// Two brokers write the same consumers; Redis keeps, for each, the later
// heartbeat with its leases, the later active time and the earlier
// registration, whatever order the flushes arrive in.
func TestTwoBrokersMergeByMax(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	a, b := presence.New(), presence.New()
	k := key("orders", "workers", "w1")
	require.NoError(t, a.Heartbeat(k, 5, t0))                    // a: registered first, had work
	require.NoError(t, b.Heartbeat(k, 0, t0.Add(time.Second)))   // b: registered later
	require.NoError(t, b.Heartbeat(k, 0, t0.Add(3*time.Second))) // b: newest beat, idle
	require.NoError(t, a.Heartbeat(k, 2, t0.Add(2*time.Second))) // a: newer work, older beat
	ma, mb := New(a, s.client(t), Options{}), New(b, s.client(t), Options{})

	_, err := mb.Flush(ctx)
	require.NoError(t, err)
	_, err = ma.Flush(ctx) // older heartbeat arrives last: must not win
	require.NoError(t, err)

	rows, err := ma.Snapshot(ctx, t0.Add(3*time.Second), ttl)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	c := rows[0]
	assert.True(t, c.RegisteredAt.Equal(t0), "earliest registration")
	assert.True(t, c.LastHeartbeat.Equal(t0.Add(3*time.Second)), "latest heartbeat")
	assert.EqualValues(t, 0, c.Leases, "leases of the latest heartbeat")
	assert.True(t, c.LastActive.Equal(t0.Add(2*time.Second)), "latest work")
	assert.Equal(t, presence.Active, c.State)

	counts, err := mb.CountByGroup(ctx, t0.Add(3*time.Second), ttl)
	require.NoError(t, err)
	assert.Equal(t, map[presence.GroupKey]presence.Counts{{Queue: "orders", Group: "workers"}: {Active: 1}}, counts)
}

// A broker restarts: its new registry restores the real times from Redis.
func TestRestoreAfterBrokerRestart(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	fill(t, r, 500, 1, t0)
	require.NoError(t, r.Heartbeat(key("odd\x00queue", "{tag}", "\xff"), 0, t0.Add(time.Second)))
	m := New(r, s.client(t), Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	fresh := presence.New()
	m2 := New(fresh, s.client(t), Options{})
	n, err := m2.Restore(ctx)
	require.NoError(t, err)
	assert.Equal(t, 501, n)
	rowsEqual(t, r.Snapshot(t0, ttl), fresh.Snapshot(t0, ttl))
}

func TestDeregisterAndPrunePropagate(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	keys := fill(t, r, 10, 0, t0)
	require.NoError(t, r.Heartbeat(keys[0], 0, t0.Add(-time.Hour))) // no-op: older
	m := New(r, s.client(t), Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	require.True(t, r.Deregister(keys[1]))
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Deleted)
	rows, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	assert.Len(t, rows, 9)

	// Everything is expired an hour later; Redis prunes.
	pruned, err := m.Prune(ctx, t0.Add(time.Hour), ttl)
	require.NoError(t, err)
	assert.Equal(t, 9, pruned)
	rows, err = m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	assert.Empty(t, rows)
}

// Redis is killed with SIGKILL in the middle of a flush and comes back
// empty. Heartbeats never notice; the flush fails and keeps its consumers
// marked; once Redis is back the mirror sees its data is gone, resends
// everything, and Redis converges to the registry with nothing lost.
func TestRedisKilledMidFlush(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	keys := fill(t, r, 50000, 1, t0)
	c := s.client(t)
	m := New(r, c, Options{BatchConsumers: 500})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, 3, t0.Add(time.Second/2)))
	}
	// Kill as soon as Redis holds part of the flush: after its third
	// pipeline.
	c.AddHook(&afterPipelines{n: 3, do: s.kill})
	_, err = m.Flush(ctx)
	require.Error(t, err)
	t.Logf("flush during the kill: %v", err)

	// Heartbeats while Redis is down: they never touch it.
	var beats atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(keys); i += 2 {
				if err := r.Heartbeat(keys[i], 2, t0.Add(time.Second)); err != nil {
					t.Error(err)
				}
				beats.Add(1)
			}
		}()
	}
	_, err = m.Flush(ctx)
	assert.Error(t, err, "a flush with Redis down fails")
	wg.Wait()
	assert.EqualValues(t, len(keys), beats.Load())

	require.NoError(t, s.start()) // back, and empty
	st := flushUntilOK(t, m)      // go-redis redials within a second
	assert.Positive(t, st.Lost, "the mirror noticed Redis lost its data")
	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// Under about a million heartbeats a second over ten thousand consumers,
// each flush writes at most one row per consumer. The figures are logged
// for the README; the assertion is the bound, not a speed.
func TestFlushUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	keys := fill(t, r, 10000, 1, t0)
	handles := make([]*presence.Handle, len(keys))
	for i, k := range keys {
		handles[i] = r.Handle(k)
	}
	m := New(r, s.client(t), Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	stop := make(chan struct{})
	var beats atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		now := t0
		for i := 0; ; i++ {
			if i%1024 == 0 {
				select {
				case <-stop:
					return
				default:
				}
			}
			now = now.Add(time.Microsecond)
			_ = handles[i%len(handles)].Heartbeat(uint32(i&1), now)
			beats.Add(1)
		}
	}()
	start := time.Now()
	var flushes []FlushStats
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond) // the flush interval of this load test
		st, err := m.Flush(ctx)
		require.NoError(t, err)
		assert.LessOrEqual(t, st.Consumers, len(keys), "a flush writes each consumer at most once")
		flushes = append(flushes, st)
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	total := 0
	for _, st := range flushes {
		total += st.Consumers
	}
	t.Logf("heartbeats: %d in %v (%.0f/s); %d flushes of %d consumers on average (max %d per flush), %d Redis writes/s, flush took %v on average",
		beats.Load(), elapsed.Round(time.Millisecond), float64(beats.Load())/elapsed.Seconds(), len(flushes),
		total/len(flushes), len(keys), int(float64(total)/elapsed.Seconds()), avgTook(flushes))
}

func avgTook(fs []FlushStats) time.Duration {
	var d time.Duration
	for _, f := range fs {
		d += f.Took
	}
	return (d / time.Duration(len(fs))).Round(time.Microsecond)
}

func TestParseFieldAndTimes(t *testing.T) {
	for _, k := range []presence.Key{{}, {Queue: "a:b", Group: "c", Consumer: "1:2:"}, {Queue: "", Group: "1:x"},
		{Queue: "日本", Group: "\x00", Consumer: "\xff"}} {
		f, b := fieldOf(k)
		back, ok := parseField(f)
		require.True(t, ok)
		assert.Equal(t, k, back)
		assert.Equal(t, bucketOf(k.Queue, k.Group), b)
	}
	// The layout is shared by every broker: a group's bucket never changes.
	assert.Equal(t, int(xxhash.Sum64String("6:orders"+"workers")%Buckets), bucketOf("orders", "workers"))
	assert.Equal(t, 76, bucketOf("orders", "workers"))
	// The protocol asks for the bucket of every group it flushes.
	long := strings.Repeat("q", 40)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = bucketOf(long, long) }), "bucketOf allocates")
	for _, f := range []string{"epoch", "seq", "9:0:ab", "1:9:ab", "x:1:a", "1:-1:ab", "-1:1:ab", "1:1"} {
		_, ok := parseField(f)
		assert.False(t, ok, "%q", f)
	}
	rec := encodeRecord(presence.Consumer{RegisteredAt: t0, LastHeartbeat: t0, Leases: 7})
	assert.Len(t, rec, recordLen)
	c, ok := decodeRecord(presence.Key{}, rec)
	require.True(t, ok)
	assert.True(t, c.LastActive.IsZero())
	assert.EqualValues(t, 7, c.Leases)
	for _, ns := range []int64{-1 << 63, -1, 0, 1, 1 << 62, 1<<63 - 1} {
		back, ok := decodeTime(encodeTime(ns))
		require.True(t, ok)
		assert.Equal(t, ns, back)
	}
	assert.Less(t, encodeTime(-5), encodeTime(3), "string order is time order")
}

// Redis stops answering (SIGSTOP) but keeps its data. The flush times out;
// its consumers stay marked, and the next flush after SIGCONT sends them
// without a full resync.
func TestRedisPausedFlushRetries(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	r := presence.New()
	keys := fill(t, r, 2000, 0, t0)
	m := New(r, s.client(t), Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, 3, t0.Add(time.Second)))
	}
	require.NoError(t, s.signal(syscall.SIGSTOP))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = m.Flush(short)
	cancel()
	require.Error(t, err, "Redis is paused")
	require.NoError(t, s.signal(syscall.SIGCONT))

	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Lost, "Redis kept its data")
	assert.Equal(t, len(keys), st.Consumers, "the failed flush's consumers were sent again")
	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// afterPipelines calls do once, after the n-th pipeline.
type afterPipelines struct {
	n, seen int
	do      func()
}

func (a *afterPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (a *afterPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (a *afterPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if a.seen++; a.seen == a.n {
			a.do()
		}
		return err
	}
}

// failPipelines fails every pipeline while on is set, as a network fault
// between the epoch check and the writes would.
type failPipelines struct{ on atomic.Bool }

func (f *failPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *failPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *failPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.on.Load() {
			return fmt.Errorf("injected pipeline failure")
		}
		return next(ctx, cmds)
	}
}

// A batch that fails after the consumers were collected leaves them marked:
// the next flush sends them, and only them.
func TestFailedBatchIsResent(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	c := s.client(t)
	fault := &failPipelines{}
	c.AddHook(fault)
	r := presence.New()
	keys := fill(t, r, 3000, 0, t0)
	m := New(r, c, Options{BatchConsumers: 1000})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	for _, k := range keys[:1500] {
		require.NoError(t, r.Heartbeat(k, 4, t0.Add(time.Second)))
	}
	fault.on.Store(true)
	_, err = m.Flush(ctx)
	require.ErrorContains(t, err, "injected")
	fault.on.Store(false)

	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1500, st.Consumers)
	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// flushedServer starts a redis-server and mirrors into it a registry of n
// consumers, flushed once.
func flushedServer(t *testing.T, n int) (*redis.Client, *presence.Registry, []presence.Key, *Mirror) {
	c := startRedis(t).client(t)
	r := presence.New()
	keys := fill(t, r, n, 0, t0)
	m := New(r, c, Options{})
	_, err := m.Flush(context.Background())
	require.NoError(t, err)
	return c, r, keys, m
}

// A bucket whose write counter went back (a replica promoted before it
// received the last writes) still has its epoch: the flush sees the
// counter and resends the bucket's consumers, and only those.
func TestBucketBehindIsResent(t *testing.T) {
	ctx := context.Background()
	c, r, keys, m := flushedServer(t, 1000)

	// The bucket of keys[0] loses its last write: the counter steps back
	// and keys[0]'s record is gone.
	field, bucket := fieldOf(keys[0])
	require.NoError(t, c.HIncrBy(ctx, m.bucketKey(bucket), "seq", -1).Err())
	require.NoError(t, c.HDel(ctx, m.bucketKey(bucket), field).Err())

	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Lost)
	inBucket := 0
	for _, k := range keys {
		if bucketOf(k.Queue, k.Group) == bucket {
			inBucket++
		}
	}
	assert.Equal(t, inBucket, st.Consumers, "the bucket's consumers, and only them")
	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// A server that lost its scripts (SCRIPT FLUSH, as after a restart or on a
// newly promoted master) answers NOSCRIPT; the calls run again with the
// script's body, and the flush succeeds.
func TestScriptFlushedIsReloaded(t *testing.T) {
	ctx := context.Background()
	c, r, keys, m := flushedServer(t, 500)
	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, 1, t0.Add(time.Second)))
	}
	require.NoError(t, c.ScriptFlush(ctx).Err())
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(keys), st.Consumers)
	require.NoError(t, c.ScriptFlush(ctx).Err())
	_, err = m.Prune(ctx, t0, ttl) // the prune script too
	require.NoError(t, err)
	got, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(t0, ttl), got)
}

// Run's timing comes from Options, and is the protocol's, defaults
// included (presence.Mirror.Run, whose tests cover the waits): a Redis reply such as
// CLUSTERDOWN counts as an answer, after which Run retries soon; a failure
// to reach a server does not, and Run backs off.
func TestRunOptions(t *testing.T) {
	m := New(presence.New(), redis.NewClient(&redis.Options{}), Options{})
	assert.Equal(t, presence.RunOptions{}, m.runOptions(), "the protocol's defaults")
	fast := New(presence.New(), redis.NewClient(&redis.Options{}), Options{FlushInterval: 100 * time.Millisecond, MaxBackoff: time.Second, ResyncEvery: -1})
	assert.Equal(t, presence.RunOptions{Interval: 100 * time.Millisecond, MaxBackoff: time.Second, ResyncEvery: -1}, fast.runOptions())

	assert.True(t, m.be.Replied(fmt.Errorf("flush: %w", replyError("CLUSTERDOWN The cluster is down"))))
	assert.False(t, m.be.Replied(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")))
	assert.False(t, m.be.Replied(context.DeadlineExceeded))
}

// replyError is an error a Redis server replied with, as go-redis types
// them (redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// A broker whose clock ran a day ahead wrote a consumer to Redis. A broker
// that restores with a correct clock refuses that row, rather than pinning
// the consumer as active for a day, and restores the others.
func TestRestoreRefusesFutureRows(t *testing.T) {
	s := startRedis(t)
	ctx := context.Background()
	ahead := presence.New()
	fill(t, ahead, 10, 0, t0)
	skewed := key("q", "g", "from-the-future")
	require.NoError(t, ahead.Heartbeat(skewed, 0, t0.Add(24*time.Hour)))
	_, err := New(ahead, s.client(t), Options{}).Flush(ctx)
	require.NoError(t, err)

	fresh := presence.New()
	n, err := New(fresh, s.client(t), Options{Now: func() time.Time { return t0 }}).Restore(ctx)
	require.ErrorIs(t, err, presence.ErrFutureTime)
	assert.Equal(t, 10, n)
	_, found := fresh.Lookup(skewed, t0, ttl)
	assert.False(t, found, "the future-dated row was restored")
}
