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
//
// The protocol itself is [presence.Mirror.Flush]; this package supplies
// the buckets (see backend).
func (m *Mirror) Flush(ctx context.Context) (FlushStats, error) {
	return m.report(m.proto.Flush(ctx))
}

// report turns the protocol's result of a flush into this package's stats
// and error. After a failure on a cluster it has the client learn the
// slot map now, since a master may have failed over, rather than at
// go-redis's next periodic refresh.
func (m *Mirror) report(r presence.FlushResult) (FlushStats, error) {
	if len(r.Failed) > 0 && m.cluster != nil {
		m.cluster.ReloadState(context.Background())
	}
	st := FlushStats{
		Consumers: r.Written, Calls: r.Batches, Pipelines: r.Rounds, Deleted: r.Deleted,
		Lost: r.Lost, Failed: len(r.Failed), Took: r.Took,
	}
	return st, unavailable("flush", r.Failed, r.Reached)
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// backend is the Redis side of the mirror protocol ([presence.Backend]):
// a part is a bucket. The protocol runs its Check and Write one flush at a
// time, which guards known and fresh.
type backend struct {
	m     *Mirror
	known [Buckets]bucketState // what this mirror last saw of each bucket
	fresh string               // the epoch of a bucket this flush creates
}

// PartOf returns the bucket of group.
func (be *backend) PartOf(g presence.GroupKey) int { return bucketOf(g.Queue, g.Group) }

// Each reads every bucket back; see Mirror.each.
func (be *backend) Each(ctx context.Context, fn func(presence.Consumer)) error {
	return be.m.each(ctx, fn)
}

// Replied reports whether err is a reply from a Redis server (such as
// CLUSTERDOWN), rather than a failure to reach one.
func (be *backend) Replied(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Check starts a flush: it draws the epoch of the buckets this flush
// creates, and reads the loss marker of every bucket this mirror wrote
// before, in one pipeline. It reports the buckets that came back empty or
// went back in time, and those it could not read.
func (be *backend) Check(ctx context.Context) []presence.PartCheck {
	be.fresh = newToken()
	m := be.m
	var bs []int
	for b := range be.known {
		if be.known[b].epoch != "" {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return nil
	}
	p := m.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(bs))
	for i, b := range bs {
		cmds[i] = p.HMGet(ctx, m.bucketKey(b), "epoch", "seq")
	}
	m.exec(ctx, p)
	out := make([]presence.PartCheck, len(bs))
	for i, b := range bs {
		out[i].Part = b
		v, err := cmds[i].Result()
		if err == nil && len(v) != 2 {
			err = errBadReply
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		ep, _ := v[0].(string)
		s, _ := v[1].(string)
		seq, _ := strconv.ParseInt(s, 10, 64)
		if kb := &be.known[b]; ep != kb.epoch || seq < kb.seq {
			*kb = bucketState{}
			out[i].Lost = true
		} else {
			kb.seq = seq
		}
	}
	return out
}

// Write runs one merge script call per batch, in one pipeline, which a
// ClusterClient splits by master and runs on all of them in parallel.
func (be *backend) Write(ctx context.Context, batches []presence.Batch) []presence.BatchResult {
	keys := make([][]string, len(batches))
	args := make([][]any, len(batches))
	var gk presence.GroupKey
	prefix := ""
	field := func(k presence.Key) string {
		// Consecutive rows often share a group (consumers registered
		// together sit together in the walk lists): reuse its prefix.
		if g := (presence.GroupKey{Queue: k.Queue, Group: k.Group}); prefix == "" || g != gk {
			gk = g
			prefix, _ = groupPrefix(k.Queue, k.Group)
		}
		return prefix + k.Consumer
	}
	for i, b := range batches {
		kb := be.known[b.Part]
		keys[i] = []string{be.m.bucketKey(b.Part)}
		a := make([]any, 0, 4+len(b.Deletes)+2*len(b.Writes))
		a = append(a, kb.epoch, be.fresh, kb.seq, len(b.Deletes))
		for _, k := range b.Deletes {
			a = append(a, field(k))
		}
		for _, c := range b.Writes {
			a = append(a, field(c.Key), encodeRecord(c))
		}
		args[i] = a
	}
	out := make([]presence.BatchResult, len(batches))
	for i, cmd := range be.m.evalAll(ctx, be.m.merge, keys, args) {
		out[i] = be.settle(batches[i].Part, cmd)
	}
	return out
}

// settle reads the reply of bucket b's script call, and updates what the
// mirror knows of the bucket's loss marker.
func (be *backend) settle(b int, cmd *redis.Cmd) presence.BatchResult {
	res, err := cmd.Slice()
	if err == nil && len(res) != 4 {
		err = errBadReply
	}
	if err != nil {
		return presence.BatchResult{Err: err}
	}
	ep, _ := res[0].(string)
	seq, _ := res[1].(int64)
	lost, _ := res[2].(int64)
	n, _ := res[3].(int64)
	kb := &be.known[b]
	if lost == 1 || ep != kb.epoch {
		*kb = bucketState{epoch: ep, seq: seq}
	} else {
		kb.seq = max(kb.seq, seq)
	}
	return presence.BatchResult{Written: int(n), Lost: lost == 1}
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
