package presence

import (
	"strings"
	"sync"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
)

// The group index
//
// Per-group and per-queue views must cost what the group or queue holds, not
// what the registry holds, so the registry keeps a secondary index: every
// (queue, group) that has consumers maps to a group holding its live
// entries, and every queue maps to the set of its groups. The index is
// written only when a consumer registers or is removed. A refresh never
// touches it.
//
// Lock order: a shard's bucket lock (registration joins the group inside the
// shard's Compute, so an entry is in its group before it is visible in its
// shard), then group.mu, then the groups map's bucket, then queue.mu.

// group is the index record of one (queue, group).
type group struct {
	key GroupKey // the group's own copies of the strings
	q   *queue
	mu  sync.Mutex
	// members are the group's entries. A member may be retired and not yet
	// removed; readers skip it.
	members map[*entry.Entry]struct{}
	// dead is set, under mu, when the last member leaves and the group is
	// being unlinked; a joiner that finds it dead looks the group up again.
	dead bool
}

// queue is the index record of one queue: the set of its groups.
type queue struct {
	name   string
	mu     sync.Mutex
	groups map[*group]struct{}
	dead   bool
}

type index struct {
	groups *xsync.MapOf[GroupKey, *group]
	queues *xsync.MapOf[string, *queue]
}

func newIndex() index {
	return index{
		groups: xsync.NewMapOf[GroupKey, *group](),
		queues: xsync.NewMapOf[string, *queue](),
	}
}

// join adds e to its group, creating the group if needed. It fails with
// ErrGroupFull if the group already has limit members (limit 0: none).
func (ix *index) join(gk GroupKey, e *entry.Entry, limit int) error {
	for {
		g, _ := ix.groups.LoadOrCompute(gk, func() *group { return ix.newGroup(gk) })
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		if limit > 0 && len(g.members) >= limit {
			g.mu.Unlock()
			return ErrGroupFull
		}
		g.members[e] = struct{}{}
		g.mu.Unlock()
		return nil
	}
}

// newGroup makes the record of a new group and adds it to its queue's set.
// It runs inside the groups map's compute, so each group is made once.
func (ix *index) newGroup(gk GroupKey) *group {
	b := strings.Clone(gk.Queue + gk.Group) // one allocation for both strings
	own := GroupKey{Queue: b[:len(gk.Queue)], Group: b[len(gk.Queue):]}
	g := &group{key: own, members: make(map[*entry.Entry]struct{})}
	for {
		q, _ := ix.queues.LoadOrCompute(own.Queue, func() *queue {
			return &queue{name: own.Queue, groups: make(map[*group]struct{})}
		})
		q.mu.Lock()
		if q.dead {
			q.mu.Unlock()
			continue
		}
		q.groups[g] = struct{}{}
		g.q = q
		q.mu.Unlock()
		return g
	}
}

// leave removes e from its group, and the group from the index when it was
// the last member.
func (ix *index) leave(gk GroupKey, e *entry.Entry) {
	g, ok := ix.groups.Load(gk)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.members, e)
	if len(g.members) > 0 || g.dead {
		return
	}
	g.dead = true
	ix.groups.Compute(gk, func(cur *group, loaded bool) (*group, bool) {
		return cur, !loaded || cur == g
	})
	q := g.q
	q.mu.Lock()
	delete(q.groups, g)
	if len(q.groups) == 0 {
		q.dead = true
		ix.queues.Compute(q.name, func(cur *queue, loaded bool) (*queue, bool) {
			return cur, !loaded || cur == q
		})
	}
	q.mu.Unlock()
}

// appendMembers appends g's entries to dst, holding g's lock only while it
// copies pointers.
func (g *group) appendMembers(dst []*entry.Entry) []*entry.Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	for e := range g.members {
		dst = append(dst, e)
	}
	return dst
}

// groupsOf returns the groups of queue name.
func (ix *index) groupsOf(name string) []*group {
	q, ok := ix.queues.Load(name)
	if !ok {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*group, 0, len(q.groups))
	for g := range q.groups {
		out = append(out, g)
	}
	return out
}
