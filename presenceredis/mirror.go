// Package presenceredis mirrors a presence.Registry into Redis or a Redis
// Cluster, so that presence survives broker restarts and every broker of a
// cluster sees every consumer.
//
// Write-behind. Heartbeats never wait for Redis: they only mark their
// consumer changed, which costs one atomic load once the mark is set (see
// [presence.Registry.CollectChanged]). A Mirror flushes on an interval,
// sending only the consumers that changed, in pipelined script calls, one
// per bucket and batch, to every master at once; at a million heartbeats a
// second over ten thousand consumers, Redis sees at most ten thousand writes
// per flush. If Redis is down or slow, heartbeats
// are unaffected and memory stays bounded, because the set of pending changes
// is the registry itself; the flusher retries with backoff and the state
// converges when Redis is back.
//
// Layout. Consumers are spread by group over [Buckets] hashes, each in one
// Redis Cluster slot, which also hold each bucket's loss marker (see
// layout.go). One script call merges a batch of a bucket's consumers and
// checks its marker atomically, and no command crosses slots.
//
// Consistency. The merge runs in Redis, in a Lua script: for each consumer
// the later heartbeat (with its leases) and active time and the earlier
// registration win, so two brokers writing the same consumer never move it
// backwards, and the order in which flushes arrive does not matter.
//
// Deletes. Deregistrations are recorded by the registry itself (see
// [presence.Registry.CollectDeleted]), so every one reaches Redis at the next
// flush, however many there are, in the script call that writes its bucket.
//
// Loss. Every script call checks its bucket's epoch and write counter, and
// every flush checks those of the buckets it wrote before: a bucket that
// came back empty (a master restarted without its data) or went back in time
// (a failover that lost the last writes) makes the mirror resend every
// consumer of that bucket, at once, without waiting for Options.ResyncEvery.
//
// Protocol. Collection, batching, re-marking of failed batches, resends
// after a loss, and the timing (interval, backoff, periodic resync) are
// [presence.Mirror]'s; this package supplies the buckets, scripts and
// cluster handling as a [presence.Backend] (see flush.go), and tells the
// protocol which errors are Redis replies.
//
// Failover. A flush or read that reaches some masters and not others writes
// or returns what it can, with an error wrapping [ErrPartial] that names the
// missing slots; see [Mirror.Run] for retries and backoff.
package presenceredis

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// Options configure a Mirror. The zero value is usable. The defaults of
// the timing and batch fields are those of presence.RunOptions and
// presence.MirrorOptions.
type Options struct {
	// Prefix starts every key; default "presence".
	Prefix string
	// FlushInterval is the time between flushes in Run; default 1s.
	FlushInterval time.Duration
	// MaxBackoff caps the wait between flushes that reached no server;
	// default 5s, so that a mirror is back within 5s of Redis. A flush
	// that some server answered is retried after min(FlushInterval,
	// 250ms) instead (see [Mirror.Run]).
	MaxBackoff time.Duration
	// ResyncEvery makes Run mark every consumer changed on this period, so
	// that writes Redis acknowledged and then lost unnoticed are repaired;
	// default 5m, negative disables.
	ResyncEvery time.Duration
	// BatchConsumers bounds the consumers (and deletes) one pipeline
	// carries, about 100 bytes each; default 10000. A batch is split
	// into one script call per bucket, so larger batches mean fewer,
	// larger calls.
	BatchConsumers int
	// Logger receives failed flushes; default slog.Default().
	Logger *slog.Logger
	// Now is the clock that Restore checks rows against; default
	// time.Now. A row whose LastHeartbeat is more than the registry's
	// clock step (presence.WithMaxClockStep) ahead of it was written by a
	// broker whose clock was ahead, and is refused (see
	// presence.Registry.MergeAt) instead of pinning its consumer.
	Now func() time.Time
}

// bucketState is what a mirror last saw of a bucket's loss marker.
type bucketState struct {
	epoch string // "" until this mirror writes to the bucket
	seq   int64
}

// Mirror copies a registry into Redis. Its methods are safe for concurrent
// use, but only one Run should be active at a time, and a registry should
// have one Mirror: they share its change marks.
type Mirror struct {
	reg        *presence.Registry
	rdb        redis.UniversalClient
	cluster    *redis.ClusterClient // rdb, if it is one
	opt        Options
	bucketKeys [Buckets]string
	merge      *redis.Script
	prune      *redis.Script

	be    backend          // the buckets, as the protocol sees them
	proto *presence.Mirror // the protocol: collection, batching, retries, timing

	onFlush func(FlushStats, error) // for tests: called by Run after each flush
}

// New returns a Mirror of r into rdb, a *redis.Client or a
// *redis.ClusterClient. From then on r records every deregistration for
// the mirror to delete (see presence.Registry.CollectDeleted).
func New(r *presence.Registry, rdb redis.UniversalClient, opt Options) *Mirror {
	if opt.Prefix == "" {
		opt.Prefix = "presence"
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := &Mirror{
		reg: r, rdb: rdb, opt: opt, bucketKeys: bucketKeys(opt.Prefix),
		merge: redis.NewScript(mergeScript), prune: redis.NewScript(pruneScript),
	}
	m.cluster, _ = rdb.(*redis.ClusterClient)
	m.be.m = m
	m.proto = presence.NewMirror(r, &m.be, presence.MirrorOptions{Batch: opt.BatchConsumers})
	return m
}

// Run flushes every FlushInterval until ctx is done, then flushes once more
// and returns ctx's error joined with that flush's. A failed flush is
// logged. If no server answered it, the next comes with exponential backoff
// up to MaxBackoff. If some did (a partial flush, see [ErrPartial], while a
// master is down, or CLUSTERDOWN while its replica takes over), the next
// comes after min(FlushInterval, 250ms), so that the live masters keep
// being updated and the end of a failover is seen soon. Every ResyncEvery
// it marks every consumer changed first. The loop is
// [presence.Mirror.Run]'s.
func (m *Mirror) Run(ctx context.Context) error {
	var last error
	opt := m.runOptions()
	opt.OnFlush = func(r presence.FlushResult, next time.Duration) {
		st, err := m.report(r)
		last = err
		if next == 0 { // the final flush: Run returns its error
			return
		}
		if m.onFlush != nil {
			m.onFlush(st, err)
		}
		if err != nil {
			m.opt.Logger.Warn("presenceredis: flush failed", "err", err, "retry_in", next)
		} else {
			m.opt.Logger.Debug("presenceredis: flushed", "consumers", st.Consumers, "calls", st.Calls, "took", st.Took)
		}
	}
	m.proto.Run(ctx, opt)
	return errors.Join(ctx.Err(), last)
}

// runOptions returns the timing of Run, from Options. The defaults are the
// protocol's (presence.RunOptions), and so is the wait after a failure that
// some server answered, min(FlushInterval, 250ms).
func (m *Mirror) runOptions() presence.RunOptions {
	return presence.RunOptions{Interval: m.opt.FlushInterval, MaxBackoff: m.opt.MaxBackoff, ResyncEvery: m.opt.ResyncEvery}
}
