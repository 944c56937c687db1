package presenceredis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// The harness itself: three masters that split the slots, each with a
// replica in sync.
func TestClusterHarness(t *testing.T) {
	c := sharedCluster(t)
	ms, err := c.masters()
	require.NoError(t, err)
	assert.Len(t, ms, 3)
	for _, m := range ms {
		r, err := c.replicaOf(m.addr())
		require.NoError(t, err)
		assert.NotEqual(t, m.addr(), r.addr())
	}
	cc := c.client(t)
	require.NoError(t, cc.Set(context.Background(), "harness", "x", 0).Err())
	require.NoError(t, cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		return m.Ping(ctx).Err()
	}))
}

// keySlot agrees with Redis, and every bucket's tag lands on its slot.
func TestKeySlotAndBucketTags(t *testing.T) {
	c := sharedCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	for _, k := range []string{"", "a", "presence", "123456789", "\xff\x00"} {
		want, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		assert.EqualValues(t, want, keySlot(k), "%q", k)
	}
	tags := bucketTags()
	m := New(presence.New(), cc, Options{Prefix: "tags"})
	for b := range Buckets {
		slot, err := cc.ClusterKeySlot(ctx, m.bucketKey(b)).Result()
		require.NoError(t, err)
		require.EqualValues(t, bucketSlot(b), slot, "bucket %d, tag %q", b, tags[b])
	}
}

// fillGroups registers n consumers spread over groups groups and several
// queues, beating at at.
func fillGroups(t testing.TB, r *presence.Registry, n, groups int, at time.Time) []presence.Key {
	keys := make([]presence.Key, n)
	for i := range keys {
		g := i % groups
		keys[i] = key(fmt.Sprint("queue-", g%5), fmt.Sprint("group-", g), fmt.Sprint("consumer-", i))
		require.NoError(t, r.Heartbeat(keys[i], uint32(i%3), at))
	}
	return keys
}

// converged asserts that Redis holds exactly the registry: Snapshot and
// CountByGroup are equal, read with no error.
func converged(t *testing.T, m *Mirror, r *presence.Registry, now time.Time) {
	t.Helper()
	got, err := m.Snapshot(context.Background(), now, ttl)
	require.NoError(t, err)
	rowsEqual(t, r.Snapshot(now, ttl), got)
	counts, err := m.CountByGroup(context.Background(), now, ttl)
	require.NoError(t, err)
	assert.Equal(t, r.CountByGroup(now, ttl), counts)
}

// A master is killed and restarted at once, empty, before its replica
// could take over (failover is disabled on the replica, as when a whole
// machine restarts); the replica then resyncs from it and is empty too.
// The next flush finds its buckets' loss markers gone and refills them.
func TestMasterRestartedEmptyIsRefilled(t *testing.T) {
	c := startCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	r := presence.New()
	fillGroups(t, r, 5000, 200, t0)
	m := New(r, cc, Options{})
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 5000, st.Consumers)

	ms, err := c.masters()
	require.NoError(t, err)
	victim := ms[1]
	replica, err := c.replicaOf(victim.addr())
	require.NoError(t, err)
	rc := replica.client(t)
	require.NoError(t, rc.ConfigSet(ctx, "cluster-replica-no-failover", "yes").Err())
	vc := victim.client(t)
	before, err := vc.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Positive(t, before, "the victim holds part of the data")

	victim.kill()
	require.NoError(t, victim.start())
	_, err = c.waitOK(30 * time.Second)
	require.NoError(t, err)
	after, err := vc.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, after, "the victim came back empty")

	// The first flush that succeeds refills it; with nothing changed in
	// the registry, only the lost buckets' consumers are sent.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err = m.Flush(ctx)
		if err == nil || time.Now().After(deadline) {
			break
		}
		t.Logf("flush after the restart: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Logf("refill: %+v", st)
	assert.Positive(t, st.Lost)
	assert.Less(t, st.Consumers, 5000, "only the lost buckets are resent")
	assert.Positive(t, st.Consumers)
	converged(t, m, r, t0)
}

// flushLog records Run's flushes with their times.
type flushLog struct {
	mu  sync.Mutex
	evs []flushEvent
}

type flushEvent struct {
	at  time.Time
	st  FlushStats
	err error
}

func (l *flushLog) add(st FlushStats, err error) {
	l.mu.Lock()
	l.evs = append(l.evs, flushEvent{time.Now(), st, err})
	l.mu.Unlock()
}

func (l *flushLog) events() []flushEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// beatAll makes every consumer beat about every 20 ms, on a clock that
// starts at t0 and follows the wall clock, until stop is closed; it
// returns the last time it used.
func beatAll(t *testing.T, r *presence.Registry, keys []presence.Key, stop chan struct{}) func() time.Time {
	var last atomic.Int64
	last.Store(t0.UnixNano())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			now := t0.Add(time.Since(start))
			for j, k := range keys {
				if err := r.Heartbeat(k, uint32((i+j)%4), now); err != nil {
					t.Error(err)
					return
				}
			}
			last.Store(now.UnixNano())
		}
	}()
	return func() time.Time { <-done; return time.Unix(0, last.Load()).UTC() }
}

// timeline logs the flushes from killed on, and returns the time of the
// first good flush after the cluster was ok again, how many flushes that
// took, and how many flushes were partial.
func timeline(t *testing.T, evs []flushEvent, killed, ok time.Time) (firstOK time.Time, afterOK, partial int) {
	for _, e := range evs {
		if e.at.Before(killed) {
			continue
		}
		t.Logf("%+6.2fs  took=%-6v consumers=%-5d lost=%-3d failed=%-3d err=%.80v", e.at.Sub(killed).Seconds(),
			e.st.Took.Round(time.Millisecond), e.st.Consumers, e.st.Lost, e.st.Failed, e.err)
		if errors.Is(e.err, ErrPartial) {
			partial++
		}
		if e.at.After(ok) && firstOK.IsZero() {
			afterOK++
			if e.err == nil {
				firstOK = e.at
			}
		}
	}
	t.Logf("killed at 0s; cluster_state:ok at %.2fs; first good flush after it at %.2fs (%.2fs later, flush %d after ok)",
		ok.Sub(killed).Seconds(), firstOK.Sub(killed).Seconds(), firstOK.Sub(ok).Seconds(), afterOK)
	return firstOK, afterOK, partial
}

// A master is SIGKILLed while the mirror flushes every second under
// steady heartbeats. While it is down the other masters keep being
// written and read (partial flushes and reads, never empty ones); its
// replica takes over; the mirror learns the new slot map after its first
// failed flush, so a flush that begins after cluster_state:ok succeeds at
// the latest on its second try; and Redis converges to the registry with
// nothing lost, even if the replica missed the last writes before the kill.
func TestMasterKilledFailsOver(t *testing.T) {
	c := startCluster(t)
	cc := c.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := presence.New()
	keys := fillGroups(t, r, 5000, 200, t0)
	m := New(r, cc, Options{})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	var log flushLog
	m.onFlush = log.add
	stop := make(chan struct{})
	lastBeat := beatAll(t, r, keys, stop)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	time.Sleep(2500 * time.Millisecond) // a few good flushes first

	ms, err := c.masters()
	require.NoError(t, err)
	victim := ms[0]
	killed := time.Now()
	victim.kill()

	// Reads while it is down return the live masters' rows.
	var partialRead bool
	for !partialRead && time.Since(killed) < nodeTimeout {
		rows, err := m.Snapshot(ctx, t0, ttl)
		if errors.Is(err, ErrPartial) {
			partialRead = true
			assert.NotEmpty(t, rows, "the live masters' rows")
			assert.Less(t, len(rows), len(keys))
			t.Logf("read while down: %d rows; %v", len(rows), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.True(t, partialRead, "a read while the master is down is partial, not empty")

	ok, err := c.waitFailover(victim.addr(), 30*time.Second)
	require.NoError(t, err)
	time.Sleep(3500 * time.Millisecond) // a few flushes after the failover
	close(stop)
	now := lastBeat()
	cancel()
	<-ran

	firstOK, afterOK, partial := timeline(t, log.events(), killed, ok)
	assert.Positive(t, partial, "the live masters kept being written while one was down")
	require.False(t, firstOK.IsZero(), "a flush succeeded after the failover")
	// The flush that fails after ok reloads the slot map, so the next one
	// succeeds; counted by end time, a flush that began before ok and ended
	// after it may fail too on a loaded machine, hence 3, not 2.
	assert.LessOrEqual(t, afterOK, 3, "the third flush ending after cluster_state:ok succeeds at the latest")

	_, err = m.Flush(context.Background())
	require.NoError(t, err)
	converged(t, m, r, now)
}

// 5,000 consumers over 200 groups land on all three masters, and the
// cluster-wide Snapshot and CountByGroup equal the registry's.
func TestClusterHoldsTheRegistry(t *testing.T) {
	c := sharedCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	r := presence.New()
	keys := fillGroups(t, r, 5000, 200, t0)
	for i, k := range keys[:1000] { // some with work, later
		require.NoError(t, r.Heartbeat(k, uint32(i%5), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	m := New(r, cc, Options{Prefix: "holds"})
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, 5000, st.Consumers)
	converged(t, m, r, t0.Add(time.Second))
	converged(t, m, r, t0.Add(time.Minute)) // stale and expired too

	ms, err := c.masters()
	require.NoError(t, err)
	for _, s := range ms {
		n, err := s.client(t).Eval(ctx, `return #redis.call('KEYS', ARGV[1])`, nil, "holds:*").Int()
		require.NoError(t, err)
		t.Logf("master %s holds %d buckets", s.addr(), n)
		assert.Positive(t, n, "every master holds some buckets")
	}
}

// Two brokers write the same consumers, one with older news, in either
// order: Redis keeps the later heartbeat with its leases, the later active
// time and the earlier registration, on every master.
func TestClusterTwoBrokersOutOfOrder(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	a, b := presence.New(), presence.New()
	keys := fillGroups(t, a, 600, 60, t0)          // a: registered first, idle
	fillGroups(t, b, 600, 60, t0.Add(time.Second)) // b: registered later
	for i, k := range keys {
		require.NoError(t, b.Heartbeat(k, 0, t0.Add(3*time.Second)))             // b: newest beat, idle
		require.NoError(t, a.Heartbeat(k, uint32(i%4+1), t0.Add(2*time.Second))) // a: older beat, with work
	}
	ma := New(a, c.client(t), Options{Prefix: "two"})
	mb := New(b, c.client(t), Options{Prefix: "two"})
	_, err := mb.Flush(ctx)
	require.NoError(t, err)
	_, err = ma.Flush(ctx) // older heartbeats arrive last: must not win
	require.NoError(t, err)

	rows, err := ma.Snapshot(ctx, t0.Add(3*time.Second), ttl)
	require.NoError(t, err)
	require.Len(t, rows, len(keys))
	for _, row := range rows {
		assert.True(t, row.RegisteredAt.Equal(t0), "%v: earliest registration", row.Key)
		assert.True(t, row.LastHeartbeat.Equal(t0.Add(3*time.Second)), "%v: latest heartbeat", row.Key)
		assert.Zero(t, row.Leases, "%v: leases of the latest heartbeat", row.Key)
		assert.True(t, row.LastActive.Equal(t0.Add(2*time.Second)), "%v: latest work", row.Key)
	}
}

// A restarted broker restores the real times from the cluster.
func TestClusterRestore(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	r := presence.New()
	fillGroups(t, r, 3000, 150, t0)
	require.NoError(t, r.Heartbeat(key("odd\x00queue", "{tag}", "\xff"), 0, t0.Add(time.Second)))
	m := New(r, c.client(t), Options{Prefix: "restore"})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	fresh := presence.New()
	m2 := New(fresh, c.client(t), Options{Prefix: "restore"})
	n, err := m2.Restore(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3001, n)
	rowsEqual(t, r.Snapshot(t0, ttl), fresh.Snapshot(t0, ttl))
}

// Prune reaches every master: it deletes the expired consumers of every
// bucket, and nothing else.
func TestClusterPrune(t *testing.T) {
	c := sharedCluster(t)
	cc := c.client(t)
	ctx := context.Background()
	r := presence.New()
	keys := fillGroups(t, r, 4000, 200, t0)
	for _, k := range keys {
		if k.Group != "group-7" && k.Group != "group-150" { // two groups die
			require.NoError(t, r.Heartbeat(k, 0, t0.Add(time.Hour)))
		}
	}
	m := New(r, cc, Options{Prefix: "prune"})
	_, err := m.Flush(ctx)
	require.NoError(t, err)

	n, err := m.Prune(ctx, t0.Add(time.Hour), ttl)
	require.NoError(t, err)
	assert.Equal(t, 40, n, "two groups of 20")
	r.PruneExpired(t0.Add(time.Hour), ttl)
	converged(t, m, r, t0.Add(time.Hour))

	n, err = m.Prune(ctx, t0.Add(3*time.Hour), ttl)
	require.NoError(t, err)
	assert.Equal(t, 3960, n)
	ms, err := c.masters()
	require.NoError(t, err)
	for _, s := range ms {
		// Each bucket keeps its loss marker, two fields, and nothing else.
		left, err := s.client(t).Eval(ctx, `local n = 0
			for _, k in ipairs(redis.call('KEYS', 'prune:*')) do
				n = n + redis.call('HLEN', k) - 2
			end
			return n`, nil).Int()
		require.NoError(t, err)
		assert.Zero(t, left, "master %s keeps no consumer", s.addr())
	}
}

// flushUntilOK flushes until a flush succeeds, for at most 10s.
func flushUntilOK(t *testing.T, m *Mirror) FlushStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := m.Flush(context.Background())
		if err == nil {
			return st
		}
		require.True(t, time.Now().Before(deadline), "no flush succeeded: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// Slots move from one master to another (redis-cli --cluster reshard)
// while the mirror flushes every 100 ms under steady heartbeats. Flushes
// that meet a migrating slot keep its consumers marked; afterwards Redis
// converges to the registry with nothing lost.
func TestClusterReshardWhileFlushing(t *testing.T) {
	c := startCluster(t)
	cc := c.client(t)
	r := presence.New()
	keys := fillGroups(t, r, 5000, 200, t0)
	m := New(r, cc, Options{})
	flushUntilOK(t, m)

	stop := make(chan struct{})
	lastBeat := beatAll(t, r, keys, stop)
	var flushes, failed atomic.Int64
	flushing := make(chan struct{})
	go func() {
		defer close(flushing)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := m.Flush(context.Background()); err != nil {
				failed.Add(1)
			}
			flushes.Add(1)
		}
	}()

	ns, err := c.view()
	require.NoError(t, err)
	var from, to node
	for _, n := range ns {
		if n.isMaster && from.id == "" {
			from = n
		} else if n.isMaster && to.id == "" {
			to = n
		}
	}
	start := time.Now()
	out, err := c.cliRun("--cluster", "reshard", from.addr, "--cluster-from", from.id, "--cluster-to", to.id,
		"--cluster-slots", "500", "--cluster-yes")
	require.NoError(t, err, out)
	t.Logf("resharded 500 slots from %s to %s in %v, during %d flushes (%d failed)", from.addr, to.addr,
		time.Since(start).Round(time.Millisecond), flushes.Load(), failed.Load())
	_, err = c.waitOK(30 * time.Second)
	require.NoError(t, err)
	close(stop)
	now := lastBeat()
	<-flushing
	assert.Greater(t, flushes.Load(), int64(2), "flushes ran during the reshard")

	ns, err = c.view()
	require.NoError(t, err)
	for _, n := range ns {
		if n.id == to.id {
			assert.Equal(t, to.slotCount()+500, n.slotCount(), "the target serves the moved slots")
		}
	}
	flushUntilOK(t, m)
	converged(t, m, r, now)
}

// 50,000 deregistrations between two flushes are all deleted, on every
// master; the 1,000 consumers that came back right after are deleted and
// written again, with their new registration time.
func TestClusterFloodOfDeregistrations(t *testing.T) {
	c := sharedCluster(t)
	r := presence.New()
	keys := fillGroups(t, r, 60000, 200, t0)
	m := New(r, c.client(t), Options{Prefix: "flood"})
	st := flushUntilOK(t, m)
	require.Equal(t, 60000, st.Consumers)

	for _, k := range keys[:50000] {
		require.True(t, r.Deregister(k))
	}
	for _, k := range keys[:1000] {
		require.NoError(t, r.Heartbeat(k, 0, t0.Add(time.Second)))
	}
	st = flushUntilOK(t, m)
	assert.Equal(t, 50000, st.Deleted)
	assert.Equal(t, 1000, st.Consumers, "the consumers that came back")
	converged(t, m, r, t0.Add(time.Second))
}

// nodeCounter counts, per node, the pipelines and single commands a
// cluster client sends, and the commands in its pipelines.
type nodeCounter struct {
	mu                      sync.Mutex
	pipelines, cmds, single map[string]int
}

func countPerNode(cc *redis.ClusterClient) *nodeCounter {
	nc := &nodeCounter{}
	nc.reset()
	cc.OnNewNode(func(rdb *redis.Client) {
		addr := rdb.Options().Addr
		rdb.AddHook(hookFuncs{
			process: func(next redis.ProcessHook) redis.ProcessHook {
				return func(ctx context.Context, cmd redis.Cmder) error {
					nc.mu.Lock()
					nc.single[addr]++
					nc.mu.Unlock()
					return next(ctx, cmd)
				}
			},
			pipeline: func(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
				return func(ctx context.Context, cmds []redis.Cmder) error {
					nc.mu.Lock()
					nc.pipelines[addr]++
					nc.cmds[addr] += len(cmds)
					nc.mu.Unlock()
					return next(ctx, cmds)
				}
			},
		})
	})
	return nc
}

func (nc *nodeCounter) reset() {
	nc.mu.Lock()
	nc.pipelines, nc.cmds, nc.single = map[string]int{}, map[string]int{}, map[string]int{}
	nc.mu.Unlock()
}

type hookFuncs struct {
	process  func(redis.ProcessHook) redis.ProcessHook
	pipeline func(redis.ProcessPipelineHook) redis.ProcessPipelineHook
}

func (h hookFuncs) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h hookFuncs) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return h.process(next) }
func (h hookFuncs) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return h.pipeline(next)
}

// No hot key: a cluster-wide read sends each master one pipeline, of one
// command per bucket it holds, and nothing else; a steady flush sends each
// master one pipeline for the loss markers and one per batch.
func TestClusterReadTouchesEachMasterOnce(t *testing.T) {
	c := sharedCluster(t)
	cc := c.client(t)
	nc := countPerNode(cc)
	ctx := context.Background()
	r := presence.New()
	keys := fillGroups(t, r, 3000, 200, t0)
	m := New(r, cc, Options{Prefix: "once", BatchConsumers: 10000})
	flushUntilOK(t, m)
	ms, err := c.masters()
	require.NoError(t, err)

	nc.reset()
	rows, err := m.Snapshot(ctx, t0, ttl)
	require.NoError(t, err)
	require.Len(t, rows, len(keys))
	cmds := 0
	for _, s := range ms {
		assert.Equal(t, 1, nc.pipelines[s.addr()], "pipelines to %s", s.addr())
		assert.Zero(t, nc.single[s.addr()], "single commands to %s", s.addr())
		cmds += nc.cmds[s.addr()]
	}
	assert.Equal(t, Buckets, cmds, "one command per bucket")

	for _, k := range keys {
		require.NoError(t, r.Heartbeat(k, 1, t0.Add(time.Second)))
	}
	nc.reset()
	st, err := m.Flush(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(keys), st.Consumers)
	for _, s := range ms {
		assert.Equal(t, 2, nc.pipelines[s.addr()], "pipelines to %s", s.addr())
		assert.Zero(t, nc.single[s.addr()], "single commands to %s", s.addr())
	}
}

// The README's cluster example runs against a cluster the tests start, as a
// new user would run it: restored nothing, then holds what it registered
// less what it deregistered; run again, it restores that.
func TestClusterExampleRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example")
	}
	c := sharedCluster(t)
	addrs := c.nodes[0].addr() + "," + c.nodes[1].addr()
	for _, want := range []string{"restored 0 consumers", "restored 900 consumers"} {
		out, err := exec.Command("go", "run", "./examples/cluster", "-addrs", addrs, "-prefix", "readme").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), want)
		assert.Contains(t, string(out), "Redis holds 900 consumers in 20 groups")
	}
}

// TestServeCluster starts the tests' cluster and keeps it until interrupted,
// for trying the README's example against it:
//
//	PRESENCE_REDIS_SERVE=1 go test -v -run TestServeCluster -timeout 0 ./presenceredis
func TestServeCluster(t *testing.T) {
	if os.Getenv("PRESENCE_REDIS_SERVE") != "1" {
		t.Skip("set PRESENCE_REDIS_SERVE=1 to start a cluster and keep it until Ctrl-C")
	}
	c := startCluster(t)
	var addrs []string
	for _, s := range c.nodes {
		addrs = append(addrs, s.addr())
	}
	fmt.Printf("cluster ready; in another terminal:\n\n\tgo run ./presenceredis/examples/cluster -addrs %s\n\nCtrl-C stops it.\n",
		strings.Join(addrs, ","))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
