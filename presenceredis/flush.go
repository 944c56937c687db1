package presenceredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// FlushStats describes one flush.
type FlushStats struct {
	Consumers int           // consumers written
	Groups    int           // script calls (one per group and batch)
	Pipelines int           // round trips
	Deleted   int           // deregistered consumers deleted
	Lost      int           // buckets found to have lost data: their consumers are resent
	Failed    int           // buckets that could not be written: their consumers stay marked
	Took      time.Duration // wall time
}

// Flush sends every consumer that changed since the last successful flush,
// and deletes the consumers deregistered since.
//
// It first checks the loss markers of the buckets it wrote before, and
// resends the consumers of every bucket that lost data. A bucket that cannot
// be reached (its master is down) is skipped for the rest of the flush
// while the others are written; the consumers of a batch that failed stay
// marked, so that a later flush sends them: nothing is lost while Redis, or
// part of it, is away. The error then wraps [ErrPartial] if some buckets
// were reached, and names the buckets and slots that were not.
func (m *Mirror) Flush(ctx context.Context) (FlushStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	f := &flush{m: m, ctx: ctx, failed: map[int]error{}, calls: map[presence.GroupKey]*call{},
		groups: map[presence.GroupKey]group{}, fresh: newToken()}
	f.checkBuckets()
	f.addDeletes()
	m.reg.CollectChanged(f.add)
	f.send()
	if len(f.lost) > 0 { // found by the scripts: resend at the next flush
		m.resend(f.lost)
	}
	if len(f.failed) > 0 && m.cluster != nil {
		// A master may have failed over: learn the new slot map now
		// rather than at go-redis's next periodic refresh.
		m.cluster.ReloadState(ctx)
	}
	f.st.Took = time.Since(start)
	f.st.Failed = len(f.failed)
	m.answered.Store(f.answered)
	return f.st, unavailable("flush", f.failed, f.reached)
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// flush is the state of one Flush.
type flush struct {
	m        *Mirror
	ctx      context.Context
	st       FlushStats
	fresh    string        // the epoch of a bucket this flush creates
	failed   map[int]error // unreachable buckets, with their first error
	reached  bool          // some command succeeded
	answered bool          // some command succeeded or got a Redis error
	lost     []int         // buckets whose scripts reported a loss

	calls  map[presence.GroupKey]*call // the pending batch, by group
	order  []*call
	count  int                         // consumers and deletes in the batch
	groups map[presence.GroupKey]group // names computed this flush
}

// call is one merge script call: a group's deletes and writes in a batch.
type call struct {
	g      group
	keys   []presence.Key // written: marked again if the call fails
	dels   []presence.Key // deleted: recorded again if the call fails
	writes []any          // 6 arguments per written consumer
}

func (f *flush) groupOf(k presence.Key) group {
	gk := presence.GroupKey{Queue: k.Queue, Group: k.Group}
	g, ok := f.groups[gk]
	if !ok {
		g = f.m.groupOf(k.Queue, k.Group)
		f.groups[gk] = g
	}
	return g
}

// callFor returns the batch's call for k's group, or nil if k's bucket is
// unreachable in this flush.
func (f *flush) callFor(k presence.Key) *call {
	gk := presence.GroupKey{Queue: k.Queue, Group: k.Group}
	if c := f.calls[gk]; c != nil {
		return c
	}
	g := f.groupOf(k)
	if f.failed[g.bucket] != nil {
		return nil
	}
	c := &call{g: g}
	f.calls[gk] = c
	f.order = append(f.order, c)
	return c
}

// add queues one changed consumer, and sends the batch when it is full.
func (f *flush) add(c presence.Consumer) {
	b := f.callFor(c.Key)
	if b == nil { // its master is away: keep it marked for later
		f.m.reg.MarkChanged(c.Key)
		return
	}
	hb := unixNano(c.LastHeartbeat)
	b.keys = append(b.keys, c.Key)
	b.writes = append(b.writes, c.Consumer, encodeTime(unixNano(c.RegisteredAt)), encodeTime(hb),
		encodeTime(unixNano(c.LastActive)), strconv.FormatUint(uint64(c.Leases), 10), score(hb))
	if f.count++; f.count >= f.m.opt.BatchConsumers {
		f.send()
	}
}

// send runs the pending batch in one pipeline, which a ClusterClient splits
// by master and runs on all of them in parallel, and settles every call.
func (f *flush) send() {
	if len(f.order) == 0 {
		return
	}
	keys := make([][]string, len(f.order))
	args := make([][]any, len(f.order))
	for i, c := range f.order {
		kb := f.m.known[c.g.bucket]
		a := make([]any, 0, 5+len(c.dels)+len(c.writes))
		a = append(a, kb.epoch, f.fresh, kb.seq, c.g.member, len(c.dels))
		for _, k := range c.dels {
			a = append(a, k.Consumer)
		}
		keys[i] = []string{c.g.h, c.g.z, f.m.dirKey(c.g.bucket)}
		args[i] = append(a, c.writes...)
	}
	cmds := f.m.evalAll(f.ctx, f.m.merge, keys, args)
	f.st.Pipelines++
	for i, c := range f.order {
		f.settle(c, cmds[i])
	}
	clear(f.calls)
	f.order, f.count = f.order[:0], 0
}

// fail records that bucket b could not be written.
func (f *flush) fail(b int, err error) {
	var re redis.Error
	if errors.As(err, &re) {
		f.answered = true
	}
	if f.failed[b] == nil {
		f.failed[b] = err
	}
}

// settle records the outcome of one call.
func (f *flush) settle(c *call, cmd *redis.Cmd) {
	res, err := cmd.Slice()
	if err == nil && len(res) != 4 {
		err = errBadReply
	}
	if err != nil {
		f.fail(c.g.bucket, err)
		for _, k := range c.keys {
			f.m.reg.MarkChanged(k)
		}
		f.m.keepDeleted(c.dels)
		return
	}
	f.reached, f.answered = true, true
	ep, _ := res[0].(string)
	seq, _ := res[1].(int64)
	lost, _ := res[2].(int64)
	n, _ := res[3].(int64)
	kb := &f.m.known[c.g.bucket]
	if lost == 1 || ep != kb.epoch {
		*kb = bucketState{epoch: ep, seq: seq}
	} else {
		kb.seq = max(kb.seq, seq)
	}
	if lost == 1 {
		f.lost = append(f.lost, c.g.bucket)
		f.st.Lost++
	}
	f.st.Consumers += int(n)
	f.st.Deleted += len(c.dels)
	f.st.Groups++
}

// checkBuckets reads the loss marker of every bucket this mirror wrote
// before, in one pipeline, and resends the consumers of the buckets that
// lost data. A bucket it cannot read is skipped for the rest of the flush.
func (f *flush) checkBuckets() {
	m := f.m
	var bs []int
	for b := range m.known {
		if m.known[b].epoch != "" {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return
	}
	p := m.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(bs))
	for i, b := range bs {
		cmds[i] = p.HMGet(f.ctx, m.dirKey(b), "epoch", "seq")
	}
	m.exec(f.ctx, p)
	var lost []int
	for i, b := range bs {
		v, err := cmds[i].Result()
		if err == nil && len(v) != 2 {
			err = errBadReply
		}
		if err != nil {
			f.fail(b, err)
			continue
		}
		f.reached, f.answered = true, true
		ep, _ := v[0].(string)
		s, _ := v[1].(string)
		seq, _ := strconv.ParseInt(s, 10, 64)
		if kb := &m.known[b]; ep != kb.epoch || seq < kb.seq {
			*kb = bucketState{}
			lost = append(lost, b)
		} else {
			kb.seq = seq
		}
	}
	if len(lost) > 0 {
		f.st.Lost += len(lost)
		m.resend(lost)
	}
}

// resend marks changed every consumer of the registry whose group is in
// one of buckets. It walks the registry's groups, and the consumers of
// those groups only.
func (m *Mirror) resend(buckets []int) {
	var want [Buckets]bool
	for _, b := range buckets {
		want[b] = true
	}
	for gk := range m.reg.CountByGroup(time.Time{}, 0) {
		if !want[bucketOf(gk.Queue, gk.Group)] {
			continue
		}
		for _, c := range m.reg.SnapshotGroup(gk, time.Time{}, 0) {
			m.reg.MarkChanged(c.Key)
		}
	}
}

// evalAll runs script once per keys[i], args[i], in one pipeline, and
// returns the commands in order. Calls that found the script missing on
// their node (a restarted or promoted master) run again with the script's
// body, which loads it there.
func (m *Mirror) evalAll(ctx context.Context, s *redis.Script, keys [][]string, args [][]any) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(keys))
	if len(keys) == 0 {
		return cmds
	}
	p := m.rdb.Pipeline()
	for i := range keys {
		cmds[i] = s.EvalSha(ctx, p, keys[i], args[i]...)
	}
	m.exec(ctx, p)
	var again []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		p := m.rdb.Pipeline()
		for _, i := range again {
			cmds[i] = s.Eval(ctx, p, keys[i], args[i]...)
		}
		m.exec(ctx, p)
	}
	return cmds
}

// exec runs p; every command then carries its own outcome. A plain
// client's pipeline that fails on the connection after its retries can
// leave commands with neither a reply nor an error (go-redis v9.17): they
// get the pipeline's error. A ClusterClient sets an error on every command
// of a node it could not reach, and the others did run.
func (m *Mirror) exec(ctx context.Context, p redis.Pipeliner) {
	cmds, err := p.Exec(ctx)
	var re redis.Error
	if err == nil || m.cluster != nil || errors.As(err, &re) {
		return
	}
	for _, c := range cmds {
		if c.Err() == nil {
			c.SetErr(err)
		}
	}
}
