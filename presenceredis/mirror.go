// Package presenceredis mirrors a presence.Registry into Redis, so that
// presence survives broker restarts and every broker of a cluster sees every
// consumer.
//
// Write-behind. Heartbeats never wait for Redis: they only mark their
// consumer changed, which costs one atomic load once the mark is set (see
// presence.Registry.CollectChanged). A Mirror flushes on an interval, sending
// only the consumers that changed, in pipelined, per-group script calls; at a
// million heartbeats a second over ten thousand consumers, Redis sees at
// most ten thousand writes per flush. If Redis is down or slow, heartbeats
// are unaffected and memory stays bounded, because the set of pending changes
// is the registry itself; the flusher retries with backoff and the state
// converges when Redis is back.
//
// Layout. Each (queue, group) has two keys that share one Redis Cluster
// hash tag, so one group lives in one slot and one script updates both:
//
//	PREFIX:{TAG}:h  hash: consumer -> "registered heartbeat active leases"
//	PREFIX:{TAG}:z  sorted set: consumer scored by heartbeat, in ms
//	PREFIX:groups   set of every group: len(queue) ":" queue group
//	PREFIX:epoch    a token that tells a mirror whether Redis lost its data
//
// TAG is the hex xxhash of the group's member string. Times are Unix
// nanoseconds stored as 20-digit offset-binary decimals, so that the merge
// script compares them exactly as strings (Lua numbers are doubles).
//
// Consistency. The merge runs in Redis, in a Lua script: for each consumer
// the later heartbeat (with its leases) and active time and the earlier
// registration win, so two brokers writing the same consumer never move it
// backwards, and the order in which flushes arrive does not matter.
package presenceredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// Options configure a Mirror. The zero value is usable.
type Options struct {
	// Prefix starts every key; default "presence".
	Prefix string
	// FlushInterval is the time between flushes in Run; default 1s.
	FlushInterval time.Duration
	// MaxBackoff caps the wait between failed flushes; default 30s.
	MaxBackoff time.Duration
	// ResyncEvery makes Run mark every consumer changed on this period, so
	// that writes Redis acknowledged and then lost (a crash between its
	// fsyncs) are repaired; default 5m, negative disables.
	ResyncEvery time.Duration
	// BatchConsumers bounds the consumers one pipeline carries; default 2000.
	BatchConsumers int
	// Logger receives failed flushes; default slog.Default().
	Logger *slog.Logger
}

// Mirror copies a registry into Redis. Its methods are safe for concurrent
// use, but only one Run should be active at a time.
type Mirror struct {
	reg    *presence.Registry
	rdb    redis.UniversalClient
	opt    Options
	epoch  string
	mu     sync.Mutex // serialises flushes
	merge  *redis.Script
	prune  *redis.Script
	leftMu sync.Mutex
	left   map[presence.Key]struct{} // deregistered, not yet deleted in Redis
	sub    *presence.Subscription
}

// New returns a Mirror of r into rdb. It subscribes to r's events to
// propagate deregistrations; call Close when done.
func New(r *presence.Registry, rdb redis.UniversalClient, opt Options) *Mirror {
	if opt.Prefix == "" {
		opt.Prefix = "presence"
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	if opt.ResyncEvery == 0 {
		opt.ResyncEvery = 5 * time.Minute
	}
	if opt.BatchConsumers <= 0 {
		opt.BatchConsumers = 2000
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	m := &Mirror{
		reg: r, rdb: rdb, opt: opt, epoch: hex.EncodeToString(tok[:]),
		merge: redis.NewScript(mergeScript), prune: redis.NewScript(pruneScript),
		left: map[presence.Key]struct{}{},
	}
	m.sub = r.Subscribe(4096)
	return m
}

// Close stops listening to the registry's events.
func (m *Mirror) Close() { m.sub.Close() }

const mergeScript = `
local n = 0
for i = 1, #ARGV, 6 do
  local c, reg, hb, act, leases, score = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local cur = redis.call('HGET', KEYS[1], c)
  if cur then
    local creg, chb, cact, cleases = string.match(cur, '^(%d+) (%d+) (%d+) (%d+)$')
    if creg then
      if creg < reg then reg = creg end
      if chb > hb then hb = chb; leases = cleases; score = nil end
      if cact > act then act = cact end
    end
  end
  redis.call('HSET', KEYS[1], c, reg .. ' ' .. hb .. ' ' .. act .. ' ' .. leases)
  if score then redis.call('ZADD', KEYS[2], score, c) end
  n = n + 1
end
return n
`

const pruneScript = `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, c in ipairs(dead) do redis.call('HDEL', KEYS[1], c) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return {#dead, redis.call('HLEN', KEYS[1])}
`

// group identifies one (queue, group) in Redis.
type group struct {
	member string // len(queue) ":" queue group, in PREFIX:groups
	h, z   string
}

func (m *Mirror) groupOf(q, g string) group {
	member := strconv.Itoa(len(q)) + ":" + q + g
	tag := strconv.FormatUint(xxhash.Sum64String(member), 16)
	base := m.opt.Prefix + ":{" + tag + "}"
	return group{member: member, h: base + ":h", z: base + ":z"}
}

func parseMember(member string) (presence.GroupKey, bool) {
	i := strings.IndexByte(member, ':')
	if i < 0 {
		return presence.GroupKey{}, false
	}
	n, err := strconv.Atoi(member[:i])
	rest := member[i+1:]
	if err != nil || n < 0 || n > len(rest) {
		return presence.GroupKey{}, false
	}
	return presence.GroupKey{Queue: rest[:n], Group: rest[n:]}, true
}

// encodeTime writes ns as a 20-digit offset-binary decimal: string order is
// time order, and math.MinInt64 (no active time) is all zeros.
func encodeTime(ns int64) string {
	s := strconv.FormatUint(uint64(ns)^(1<<63), 10)
	return strings.Repeat("0", 20-len(s)) + s
}

func decodeTime(s string) (int64, bool) {
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil || len(s) != 20 {
		return 0, false
	}
	return int64(u ^ (1 << 63)), true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// score is a heartbeat in milliseconds, exact in a float64 for any date.
func score(ns int64) float64 { return float64(ns / 1e6) }

// FlushStats describes one flush.
type FlushStats struct {
	Consumers int           // consumers written
	Groups    int           // script calls (one per group and batch)
	Pipelines int           // round trips
	Deleted   int           // deregistered consumers deleted
	Resynced  bool          // Redis had lost its data: everything was sent
	Took      time.Duration // wall time
}

// Flush sends every consumer that changed since the last successful flush,
// and deletes the consumers deregistered since. If a batch fails, its
// consumers are marked changed again, so that a later flush sends them:
// nothing is lost while Redis is away.
func (m *Mirror) Flush(ctx context.Context) (FlushStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	var st FlushStats
	m.drainEvents()

	lost, err := m.checkEpoch(ctx)
	if err != nil {
		return st, err
	}
	if lost {
		m.reg.MarkAllChanged()
		st.Resynced = true
	}

	type pending struct {
		g    group
		keys []presence.Key
		args []any
	}
	batch := map[string]*pending{}
	var order []string
	count := 0
	var firstErr error
	send := func() {
		if count == 0 {
			return
		}
		err := m.sendBatch(ctx, func(p redis.Pipeliner, sha string) {
			for _, id := range order {
				b := batch[id]
				p.EvalSha(ctx, sha, []string{b.g.h, b.g.z}, b.args...)
				p.SAdd(ctx, m.opt.Prefix+":groups", b.g.member)
			}
		})
		if err != nil {
			for _, b := range batch {
				for _, k := range b.keys {
					m.reg.MarkChanged(k)
				}
			}
			if firstErr == nil {
				firstErr = err
			}
		} else {
			st.Consumers += count
			st.Groups += len(order)
			st.Pipelines++
		}
		clear(batch)
		order, count = order[:0], 0
	}
	m.reg.CollectChanged(func(c presence.Consumer) {
		if firstErr != nil { // Redis is away: keep the rest marked for later
			m.reg.MarkChanged(c.Key)
			return
		}
		g := m.groupOf(c.Queue, c.Group)
		b := batch[g.member]
		if b == nil {
			b = &pending{g: g}
			batch[g.member] = b
			order = append(order, g.member)
		}
		hb := unixNano(c.LastHeartbeat)
		b.keys = append(b.keys, c.Key)
		b.args = append(b.args, c.Consumer, encodeTime(unixNano(c.RegisteredAt)), encodeTime(hb),
			encodeTime(unixNano(c.LastActive)), strconv.FormatUint(uint64(c.Leases), 10), score(hb))
		if count++; count >= m.opt.BatchConsumers {
			send()
		}
	})
	if firstErr == nil {
		send()
	}
	if firstErr == nil {
		st.Deleted, firstErr = m.deleteLeft(ctx)
	}
	st.Took = time.Since(start)
	return st, firstErr
}

// sendBatch runs one pipeline, loading the merge script first if Redis does
// not have it (after a restart, for example).
func (m *Mirror) sendBatch(ctx context.Context, fill func(redis.Pipeliner, string)) error {
	for attempt := 0; ; attempt++ {
		p := m.rdb.Pipeline()
		fill(p, m.merge.Hash())
		_, err := p.Exec(ctx)
		if err != nil && attempt == 0 && strings.Contains(err.Error(), "NOSCRIPT") {
			if err := m.merge.Load(ctx, m.rdb).Err(); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// checkEpoch reports whether Redis lost the data this mirror wrote: the
// epoch key it set is gone or not its own.
func (m *Mirror) checkEpoch(ctx context.Context) (bool, error) {
	key := m.opt.Prefix + ":epoch"
	cur, err := m.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		ok, err := m.rdb.SetNX(ctx, key, m.epoch, 0).Result()
		if err != nil {
			return false, err
		}
		if !ok { // another mirror set it first: adopt it
			if cur, err = m.rdb.Get(ctx, key).Result(); err != nil {
				return false, err
			}
			m.epoch = cur
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if cur != m.epoch {
		// Another mirror's epoch: the first time we see it we resend, then
		// share it from then on.
		m.epoch = cur
		return true, nil
	}
	return false, nil
}

// drainEvents notes deregistrations, to delete them in Redis.
func (m *Mirror) drainEvents() {
	m.leftMu.Lock()
	defer m.leftMu.Unlock()
	for {
		select {
		case e, ok := <-m.sub.C:
			if !ok {
				return
			}
			if e.Kind == presence.EventLeft {
				m.left[e.Key] = struct{}{}
			}
		default:
			return
		}
	}
}

// deleteLeft deletes the consumers deregistered here and not registered
// again since.
func (m *Mirror) deleteLeft(ctx context.Context) (int, error) {
	m.leftMu.Lock()
	defer m.leftMu.Unlock()
	if len(m.left) == 0 {
		return 0, nil
	}
	p := m.rdb.Pipeline()
	n := 0
	for k := range m.left {
		if _, back := m.reg.Lookup(k, time.Time{}, 0); back {
			delete(m.left, k)
			continue
		}
		g := m.groupOf(k.Queue, k.Group)
		p.HDel(ctx, g.h, k.Consumer)
		p.ZRem(ctx, g.z, k.Consumer)
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, err
	}
	clear(m.left)
	return n, nil
}

// Run flushes every FlushInterval until ctx is done, then flushes once more
// and returns ctx's error. Failed flushes are logged and retried with
// exponential backoff up to MaxBackoff.
func (m *Mirror) Run(ctx context.Context) error {
	wait := m.opt.FlushInterval
	lastResync := time.Now()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := m.Flush(fctx)
			cancel()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
		if m.opt.ResyncEvery > 0 && time.Since(lastResync) >= m.opt.ResyncEvery {
			m.reg.MarkAllChanged()
			lastResync = time.Now()
		}
		st, err := m.Flush(ctx)
		if err != nil {
			wait = min(max(2*wait, m.opt.FlushInterval), m.opt.MaxBackoff)
			m.opt.Logger.Warn("presenceredis: flush failed", "err", err, "retry_in", wait)
		} else {
			wait = m.opt.FlushInterval
			m.opt.Logger.Debug("presenceredis: flushed", "consumers", st.Consumers, "groups", st.Groups, "took", st.Took)
		}
		t.Reset(wait)
	}
}

// Snapshot returns every consumer that any broker has flushed, merged, with
// Age and State computed for now and ttl, sorted as presence.Snapshot sorts.
func (m *Mirror) Snapshot(ctx context.Context, now time.Time, ttl time.Duration) ([]presence.Consumer, error) {
	var out []presence.Consumer
	err := m.each(ctx, func(c presence.Consumer) {
		c.Age = now.Sub(c.LastHeartbeat)
		if c.Age < 0 {
			c.Age = 0
		}
		c.State = presence.Classify(c.Age, ttl)
		out = append(out, c)
	})
	slices.SortFunc(out, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
	return out, err
}

// CountByGroup returns cluster-wide counts by group and state.
func (m *Mirror) CountByGroup(ctx context.Context, now time.Time, ttl time.Duration) (map[presence.GroupKey]presence.Counts, error) {
	rows, err := m.Snapshot(ctx, now, ttl)
	if err != nil {
		return nil, err
	}
	out := map[presence.GroupKey]presence.Counts{}
	for _, c := range rows {
		g := presence.GroupKey{Queue: c.Queue, Group: c.Group}
		n := out[g]
		n.Add(c.State)
		out[g] = n
	}
	return out, nil
}

// Restore merges every consumer stored in Redis into the registry (see
// presence.Registry.Merge), typically at startup, and returns how many rows
// it merged.
func (m *Mirror) Restore(ctx context.Context) (int, error) {
	n := 0
	var mergeErr error
	err := m.each(ctx, func(c presence.Consumer) {
		if err := m.reg.Merge(c); err != nil {
			mergeErr = errors.Join(mergeErr, err)
			return
		}
		n++
	})
	return n, errors.Join(err, mergeErr)
}

// Prune deletes, in Redis, every consumer whose last heartbeat is more than
// 2·ttl before now (to the millisecond), and forgets empty groups. It
// returns how many it deleted.
func (m *Mirror) Prune(ctx context.Context, now time.Time, ttl time.Duration) (int, error) {
	members, err := m.rdb.SMembers(ctx, m.opt.Prefix+":groups").Result()
	if err != nil {
		return 0, err
	}
	cut := score(now.UnixNano()) - float64(2*ttl/time.Millisecond)
	total := 0
	for _, member := range members {
		gk, ok := parseMember(member)
		if !ok {
			continue
		}
		g := m.groupOf(gk.Queue, gk.Group)
		res, err := m.prune.Run(ctx, m.rdb, []string{g.h, g.z}, cut).Int64Slice()
		if err != nil {
			return total, err
		}
		total += int(res[0])
		if res[1] == 0 {
			m.rdb.SRem(ctx, m.opt.Prefix+":groups", member)
		}
	}
	return total, nil
}

// each calls fn with every stored consumer (Age and State unset).
func (m *Mirror) each(ctx context.Context, fn func(presence.Consumer)) error {
	members, err := m.rdb.SMembers(ctx, m.opt.Prefix+":groups").Result()
	if err != nil {
		return err
	}
	p := m.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(members))
	keys := make([]presence.GroupKey, len(members))
	for i, member := range members {
		gk, ok := parseMember(member)
		if !ok {
			continue
		}
		keys[i] = gk
		cmds[i] = p.HGetAll(ctx, m.groupOf(gk.Queue, gk.Group).h)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		for consumer, v := range cmd.Val() {
			c, ok := decodeRecord(presence.Key{Queue: keys[i].Queue, Group: keys[i].Group, Consumer: consumer}, v)
			if ok {
				fn(c)
			}
		}
	}
	return nil
}

func decodeRecord(k presence.Key, v string) (presence.Consumer, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return presence.Consumer{}, false
	}
	reg, ok1 := decodeTime(f[0])
	hb, ok2 := decodeTime(f[1])
	act, ok3 := decodeTime(f[2])
	leases, err := strconv.ParseUint(f[3], 10, 32)
	if !ok1 || !ok2 || !ok3 || err != nil {
		return presence.Consumer{}, false
	}
	c := presence.Consumer{
		Key:           k,
		RegisteredAt:  time.Unix(0, reg).UTC(),
		LastHeartbeat: time.Unix(0, hb).UTC(),
		Leases:        uint32(leases),
	}
	if act != math.MinInt64 {
		c.LastActive = time.Unix(0, act).UTC()
	}
	return c, true
}
