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
	Calls     int           // script calls (one per bucket and batch)
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
	f := &flush{m: m, ctx: ctx, failed: map[int]error{}, fresh: newToken()}
	f.checkBuckets()
	f.addDeletes()
	m.reg.CollectChanged(f.add)
	f.send()
	f.wait()
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

	calls [Buckets]*call // the pending batch, by bucket
	order []*call        // its calls in order
	count int            // consumers and deletes in the batch

	inFlight func()   // waits for the batch in flight and settles it
	last     struct { // the group of the last consumer added
		gk     presence.GroupKey
		prefix string
		bucket int
	}
}

// call is one merge script call: the deletes and writes of a batch in one
// bucket.
type call struct {
	bucket int
	keys   []presence.Key // written: marked again if the call fails
	dels   []presence.Key // deleted: recorded again if the call fails
	delf   []any          // the fields of dels
	writes []any          // field and record of each written consumer
}

// callFor returns the call of the pending batch for k and k's field, or
// nil if k's bucket is unreachable in this flush. Rows come a group at a
// time (see presence.Registry.CollectChanged), so the field prefix of the
// last group is reused.
func (f *flush) callFor(k presence.Key) (*call, string) {
	if gk := (presence.GroupKey{Queue: k.Queue, Group: k.Group}); f.last.prefix == "" || f.last.gk != gk {
		f.last.gk = gk
		f.last.prefix, f.last.bucket = groupPrefix(k.Queue, k.Group)
	}
	b := f.last.bucket
	if f.failed[b] != nil {
		return nil, ""
	}
	c := f.calls[b]
	if c == nil {
		c = &call{bucket: b}
		f.calls[b] = c
		f.order = append(f.order, c)
	}
	return c, f.last.prefix + k.Consumer
}

// add queues one changed consumer, and sends the batch when it is full.
func (f *flush) add(c presence.Consumer) {
	call, field := f.callFor(c.Key)
	if call == nil { // its master is away: keep it marked for later
		f.m.reg.MarkChanged(c.Key)
		return
	}
	call.keys = append(call.keys, c.Key)
	call.writes = append(call.writes, field, encodeRecord(c))
	f.grew()
}

// grew counts one more consumer or delete in the batch, and sends the
// batch when it is full.
func (f *flush) grew() {
	if f.count++; f.count >= f.m.opt.BatchConsumers {
		f.send()
	}
}

// send starts the pending batch in one pipeline, which a ClusterClient
// splits by master and runs on all of them in parallel. One batch is in
// flight while the next is collected: send first settles the previous one.
func (f *flush) send() {
	if len(f.order) == 0 {
		return
	}
	calls := f.order
	keys := make([][]string, len(calls))
	args := make([][]any, len(calls))
	for i, c := range calls {
		kb := f.m.known[c.bucket]
		keys[i] = []string{f.m.bucketKey(c.bucket)}
		a := make([]any, 0, 4+len(c.delf)+len(c.writes))
		a = append(a, kb.epoch, f.fresh, kb.seq, len(c.delf))
		a = append(a, c.delf...)
		args[i] = append(a, c.writes...)
		f.calls[c.bucket] = nil
	}
	f.order, f.count = nil, 0
	f.wait()
	done := make(chan []*redis.Cmd, 1)
	go func() { done <- f.m.evalAll(f.ctx, f.m.merge, keys, args) }()
	f.inFlight = func() {
		cmds := <-done
		for i, c := range calls {
			f.settle(c, cmds[i])
		}
	}
	f.st.Pipelines++
}

// wait settles the batch in flight, if any.
func (f *flush) wait() {
	if settle := f.inFlight; settle != nil {
		f.inFlight = nil
		settle()
	}
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
		f.fail(c.bucket, err)
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
	kb := &f.m.known[c.bucket]
	if lost == 1 || ep != kb.epoch {
		*kb = bucketState{epoch: ep, seq: seq}
	} else {
		kb.seq = max(kb.seq, seq)
	}
	if lost == 1 {
		f.lost = append(f.lost, c.bucket)
		f.st.Lost++
	}
	f.st.Consumers += int(n)
	f.st.Deleted += len(c.dels)
	f.st.Calls++
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
		cmds[i] = p.HMGet(f.ctx, m.bucketKey(b), "epoch", "seq")
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
