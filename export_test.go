package presence

// IndexSizes returns the number of groups and queues in r's group index, so
// that tests can check that empty ones are removed.
func (r *Registry) IndexSizes() (groups, queues int) {
	return r.ix.groups.Size(), r.ix.queues.Size()
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
	grp, ok := r.ix.groups.Load(g)
	if !ok {
		return -1
	}
	return len(grp.view())
}

// QueueSlots returns the length of queue q's list of groups, dead groups
// included, or -1 if the queue is not indexed.
func (r *Registry) QueueSlots(q string) int {
	qu, ok := r.ix.queues.Load(q)
	if !ok {
		return -1
	}
	qu.mu.Lock()
	defer qu.mu.Unlock()
	return len(qu.groups)
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
