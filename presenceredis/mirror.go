// Package presenceredis mirrors a presence.Registry into Redis or a Redis
// Cluster, so that presence survives broker restarts and every broker of a
// cluster sees every consumer.
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
// Layout. Groups are spread over [Buckets] buckets, each in one Redis
// Cluster slot (see layout.go): a group's hash of records and sorted set of
// heartbeats share their bucket's hash tag with the bucket's directory,
// which also holds the bucket's epoch. One script call updates a group and
// its directory atomically, and no command crosses slots.
//
// Consistency. The merge runs in Redis, in a Lua script: for each consumer
// the later heartbeat (with its leases) and active time and the earlier
// registration win, so two brokers writing the same consumer never move it
// backwards, and the order in which flushes arrive does not matter.
//
// Loss. Every script call checks its bucket's epoch and write counter, and
// every flush checks those of the buckets it wrote before: a bucket that
// came back empty (a master restarted without its data) or went back in time
// (a failover that lost the last writes) makes the mirror resend every
// consumer of that bucket, at once, without waiting for Options.ResyncEvery.
package presenceredis

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// Options configure a Mirror. The zero value is usable.
type Options struct {
	// Prefix starts every key; default "presence".
	Prefix string
	// FlushInterval is the time between flushes in Run; default 1s.
	FlushInterval time.Duration
	// MaxBackoff caps the wait between flushes that failed entirely;
	// default 5s. A flush that reached some masters is not backed off,
	// so that they keep being updated while another fails over.
	MaxBackoff time.Duration
	// ResyncEvery makes Run mark every consumer changed on this period, so
	// that writes Redis acknowledged and then lost unnoticed are repaired;
	// default 5m, negative disables.
	ResyncEvery time.Duration
	// BatchConsumers bounds the consumers one pipeline carries; default 2000.
	BatchConsumers int
	// Logger receives failed flushes; default slog.Default().
	Logger *slog.Logger
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
	bucketBase [Buckets]string
	merge      *redis.Script
	prune      *redis.Script

	mu    sync.Mutex // serialises flushes; guards known
	known [Buckets]bucketState

	leftMu sync.Mutex
	left   map[presence.Key]struct{} // deregistered, not yet deleted in Redis
	sub    *presence.Subscription
}

// New returns a Mirror of r into rdb, a *redis.Client or a
// *redis.ClusterClient. It subscribes to r's events to propagate
// deregistrations; call Close when done.
func New(r *presence.Registry, rdb redis.UniversalClient, opt Options) *Mirror {
	if opt.Prefix == "" {
		opt.Prefix = "presence"
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Second
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
	m := &Mirror{
		reg: r, rdb: rdb, opt: opt, bucketBase: bucketBases(opt.Prefix),
		merge: redis.NewScript(mergeScript), prune: redis.NewScript(pruneScript),
		left: map[presence.Key]struct{}{},
	}
	m.cluster, _ = rdb.(*redis.ClusterClient)
	m.sub = r.Subscribe(4096)
	return m
}

// Close stops listening to the registry's events.
func (m *Mirror) Close() { m.sub.Close() }

// Run flushes every FlushInterval until ctx is done, then flushes once more
// and returns ctx's error. A flush that failed entirely is logged and
// retried with exponential backoff up to MaxBackoff; one that reached some
// buckets (see [ErrPartial]) is logged and the next comes after
// FlushInterval.
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
		wait = m.nextWait(wait, err)
		switch {
		case err != nil:
			m.opt.Logger.Warn("presenceredis: flush failed", "err", err, "retry_in", wait)
		default:
			m.opt.Logger.Debug("presenceredis: flushed", "consumers", st.Consumers, "groups", st.Groups, "took", st.Took)
		}
		t.Reset(wait)
	}
}

// nextWait is the wait before the flush after one that returned err.
func (m *Mirror) nextWait(wait time.Duration, err error) time.Duration {
	if err == nil || errors.Is(err, ErrPartial) {
		return m.opt.FlushInterval
	}
	return min(max(2*wait, m.opt.FlushInterval), m.opt.MaxBackoff)
}
