package presence

// IndexSizes returns the number of groups and queues in r's group index, so
// that tests can check that empty ones are removed.
func (r *Registry) IndexSizes() (groups, queues int) {
	return r.ix.groups.Size(), r.ix.queues.Size()
}

// HashKey returns r's hash of k.
func HashKey(r *Registry, k Key) uint64 { return hashKey(r.seed, &k) }

// DeletionRecords returns the number of deregistrations r holds for a
// mirror.
func (r *Registry) DeletionRecords() int { return int(r.dels.n.Load()) }
