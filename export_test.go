package presence

// IndexSizes returns the number of groups in r's group index, and of its
// queue lists (one per queue hash: as many as queues unless queue hashes
// collide), so that tests can check that empty ones are removed. Groups are
// those in the lists, dead ones included, plus any that groups or its spill
// hold beyond the lists' groups that should be there; -1 if the spill's
// count is wrong.
func (r *Registry) IndexSizes() (groups, queues int) {
	mapped := 0
	r.ix.queues.Range(func(_ uint64, head *group) bool {
		return walkList(head, func(g *group) bool {
			groups++
			if _, gh := r.ix.hashes(g.key()); r.ix.mapped(gh, g) {
				mapped++
			}
			return true
		})
	})
	r.ix.spillMu.Lock()
	defer r.ix.spillMu.Unlock()
	if r.ix.spilled.Load() != int64(len(r.ix.spill)) {
		return -1, -1 // the spill's count is wrong
	}
	return groups + r.ix.groups.Size() + len(r.ix.spill) - mapped, r.ix.queues.Size()
}

// HashKey returns r's hash of k.
func HashKey(r *Registry, k Key) uint64 { return r.hash(&k) }

// WithHashBits keeps only the low n bits of every key's hash, so that keys
// collide: with n small, most keys share their hash with others, and every
// path of a shard's spill runs.
func WithHashBits(n uint) Option {
	return func(c *config) { c.hashClear = ^uint64(0) << n }
}

// DeletionRecords returns the number of deregistrations r holds for a
// mirror.
func (r *Registry) DeletionRecords() int { return int(r.dels.n.Load()) }

// GroupSlots returns the length of group g's member list, retired members
// included, or -1 if the group is not indexed.
func (r *Registry) GroupSlots(g GroupKey) int {
	grp := r.ix.group(g)
	if grp == nil {
		return -1
	}
	return len(grp.view())
}

// QueueSlots returns the number of groups in queue q's list, dead groups
// included, or -1 if the queue is not indexed.
func (r *Registry) QueueSlots(q string) int {
	n := -1
	walkList(r.ix.list(q), func(g *group) bool {
		if g.key().Queue == q {
			n = max(n, 0) + 1
		}
		return true
	})
	return n
}

// WalkListLens returns the length of each of r's walk lists, retired
// entries included.
func (r *Registry) WalkListLens() []int {
	out := make([]int, len(r.lists))
	for i := range r.lists {
		out[i] = len(r.lists[i].view())
	}
	return out
}

// QueueGroups returns the keys of queue q's live groups as the index lists
// them, a group as often as the list walk meets it.
func (r *Registry) QueueGroups(q string) []GroupKey {
	var out []GroupKey
	r.ix.eachOf(q, func(g *group) { out = append(out, g.key()) })
	return out
}

// IndexGroups returns the keys of every live group as a walk of the whole
// index meets them.
func (r *Registry) IndexGroups() []GroupKey {
	var out []GroupKey
	r.ix.each(func(g *group) bool { out = append(out, g.key()); return true })
	return out
}
