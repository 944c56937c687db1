package presenceredis

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// Snapshot returns every consumer that any broker has flushed, merged, with
// Age and State computed for now and ttl, sorted as presence.Snapshot sorts.
// If some buckets cannot be read (a master is down), it returns the rows of
// the others and an error wrapping [ErrPartial] that names what is missing.
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
// presence.Registry.Merge), typically at startup, and returns how many rows
// it merged. Rows of unreachable buckets are missing, as in Snapshot.
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
// 2·ttl before now (to the millisecond), and forgets groups left empty. It
// runs one script per group, pipelined to every master at once, and
// returns how many consumers it deleted.
func (m *Mirror) Prune(ctx context.Context, now time.Time, ttl time.Duration) (int, error) {
	gs, failed := m.directory(ctx)
	cut := score(now.UnixNano()) - float64(2*ttl/time.Millisecond)
	keys := make([][]string, len(gs))
	args := make([][]any, len(gs))
	for i, g := range gs {
		keys[i] = []string{g.h, g.z, m.dirKey(g.bucket)}
		args[i] = []any{cut, g.member}
	}
	total := 0
	for i, cmd := range m.evalAll(ctx, m.prune, keys, args) {
		res, err := cmd.Int64Slice()
		if err == nil && len(res) != 2 {
			err = errBadReply
		}
		if err != nil {
			failed[gs[i].bucket] = err
			continue
		}
		total += int(res[0])
	}
	return total, unavailable("prune", failed, len(failed) < Buckets)
}

// directory reads every bucket's directory, one command per bucket in one
// pipeline (so one round trip to each master), and returns the groups it
// lists, and the buckets it could not read.
func (m *Mirror) directory(ctx context.Context) ([]group, map[int]error) {
	p := m.rdb.Pipeline()
	var cmds [Buckets]*redis.MapStringStringCmd
	for b := range cmds {
		cmds[b] = p.HGetAll(ctx, m.dirKey(b))
	}
	m.exec(ctx, p)
	failed := map[int]error{}
	var gs []group
	for b, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			failed[b] = err
			continue
		}
		for field := range cmd.Val() {
			if gk, ok := parseMember(field); ok {
				gs = append(gs, m.groupOf(gk.Queue, gk.Group))
			}
		}
	}
	return gs, failed
}

// each calls fn with every stored consumer (Age and State unset) of the
// buckets it can read: two round trips to each master, one for the
// directories and one for the groups' hashes.
func (m *Mirror) each(ctx context.Context, fn func(presence.Consumer)) error {
	gs, failed := m.directory(ctx)
	p := m.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(gs))
	for i, g := range gs {
		cmds[i] = p.HGetAll(ctx, g.h)
	}
	if len(gs) > 0 {
		m.exec(ctx, p)
	}
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			failed[gs[i].bucket] = err
			continue
		}
		gk, _ := parseMember(gs[i].member)
		for consumer, v := range cmd.Val() {
			c, ok := decodeRecord(presence.Key{Queue: gk.Queue, Group: gk.Group, Consumer: consumer}, v)
			if ok {
				fn(c)
			}
		}
	}
	return unavailable("read", failed, len(failed) < Buckets)
}
