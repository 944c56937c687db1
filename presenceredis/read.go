package presenceredis

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// Snapshot returns every consumer that any broker has flushed, merged, with
// Age and State computed for now and ttl, sorted as presence.Snapshot sorts.
// A consumer that declared its own TTL (presence.Registry.HeartbeatWithTTL)
// is judged by that one, and its row carries it, as in the registry.
// If some buckets cannot be read (a master is down), it returns the rows of
// the others and an error wrapping [ErrPartial] that names what is missing.
func (m *Mirror) Snapshot(ctx context.Context, now time.Time, ttl time.Duration) ([]presence.Consumer, error) {
	var out []presence.Consumer
	err := m.each(ctx, func(c presence.Consumer) { out = append(out, c.At(now, ttl)) })
	slices.SortFunc(out, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
	return out, err
}

// CountByGroup returns cluster-wide counts by group and state. Like
// Snapshot, it returns what it could read and an error for the rest.
func (m *Mirror) CountByGroup(ctx context.Context, now time.Time, ttl time.Duration) (map[presence.GroupKey]presence.Counts, error) {
	rows, err := m.Snapshot(ctx, now, ttl)
	out := map[presence.GroupKey]presence.Counts{}
	for _, c := range rows {
		g := presence.GroupKey{Queue: c.Queue, Group: c.Group}
		n := out[g]
		n.Add(c.State)
		out[g] = n
	}
	return out, err
}

// Restore merges every consumer stored in Redis into the registry (see
// presence.Registry.MergeAt), typically at startup, and returns how many
// rows it merged. Rows of unreachable buckets are missing, as in Snapshot.
// A row stamped further in the future than the registry's clock step, by
// Options.Now, is not merged: the error then wraps presence.ErrFutureTime.
func (m *Mirror) Restore(ctx context.Context) (int, error) {
	now := time.Now
	if m.opt.Now != nil {
		now = m.opt.Now
	}
	return m.proto.Restore(ctx, now())
}

// Prune deletes, in Redis, every consumer whose last heartbeat is more than
// 2·ttl before now, or twice its own TTL if it declared one, and returns how
// many it deleted. It runs one script per
// bucket, pipelined to every master at once; each reads its whole bucket.
func (m *Mirror) Prune(ctx context.Context, now time.Time, ttl time.Duration) (int, error) {
	cut := encodeTime(now.Add(-2 * ttl).UnixNano())
	keys := make([][]string, Buckets)
	args := make([][]any, Buckets)
	for b := range keys {
		keys[b] = []string{m.bucketKey(b)}
		args[b] = []any{cut, now.UnixMilli()}
	}
	failed := map[int]error{}
	total := 0
	for b, cmd := range m.evalAll(ctx, m.prune, keys, args) {
		n, err := cmd.Int()
		if err != nil {
			failed[b] = err
			continue
		}
		total += n
	}
	return total, unavailable("prune", failed, len(failed) < Buckets)
}

// each calls fn with every stored consumer (Age and State unset) of the
// buckets it can read: one HGETALL per bucket, in one pipeline, so one
// round trip to each master.
func (m *Mirror) each(ctx context.Context, fn func(presence.Consumer)) error {
	p := m.rdb.Pipeline()
	var cmds [Buckets]*redis.MapStringStringCmd
	for b := range cmds {
		cmds[b] = p.HGetAll(ctx, m.bucketKey(b))
	}
	m.exec(ctx, p)
	failed := map[int]error{}
	for b, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			failed[b] = err
			continue
		}
		for field, v := range cmd.Val() {
			k, ok := parseField(field)
			if !ok {
				continue // the loss marker
			}
			if c, ok := decodeRecord(k, v); ok {
				fn(c)
			}
		}
	}
	return unavailable("read", failed, len(failed) < Buckets)
}
