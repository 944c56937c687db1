// Package presence tells a queue broker which consumers are alive.
//
// Consumers heartbeat. A Registry records, for every (queue, group,
// consumer), when it registered, when it last beat and how many leases it
// reported, and classifies it against a TTL as Active, Stale or Expired (see
// Classify). Aliveness is heartbeat-driven: an idle poller with no pending
// deliveries is active, and a dead worker that still holds leases is not.
//
// The registry never reads the clock: every method takes now, as
// golang.org/x/time/rate does, so that tests drive time and brokers reuse a
// timestamp they already took.
package presence

// Concurrency design
//
// Refresh. A heartbeat for a registered consumer hashes its key once, loads
// the entry from its shard's xsync.MapOf (a lock-free read), and updates the
// entry's own atomic words: a CAS that moves the heartbeat time forwards
// (or, by more than the clock step, backwards: a clock correction), a CAS
// that stores the lease count tagged with that time, and a load of the
// change mark for mirrors (entry.Entry.Beat). No mutex, no bucket lock, no
// shared counter, no allocation. A Handle skips the hash and the lookup too, by
// keeping the entry pointer. A refresh that declares a TTL
// (HeartbeatWithTTL) also loads the entry's TTL word and stores it only when
// the declared value differs, before the lease write, so that a row whose
// lease count is that of the beat at its heartbeat time has that beat's TTL
// or a newer one.
//
// Removal. An entry is never simply deleted from its map. It is first
// retired: a CAS moves its heartbeat word from the value the remover looked
// at to nanotime.None, a value no time converts to. The remover does that
// inside a Compute on the entry's key, and in the same Compute, under the
// key's bucket lock, gives back the entry's slots under the limits, takes it
// out of its group, emits its Expired or Left event and deletes it. So for
// anyone else who takes that lock, a registration of the same key above all,
// the removal is one step: no registration ever finds a retired entry still
// holding its slots, and one key's events are emitted in the order they
// happened. PruneExpired retires with CAS(seen, None), where seen is the
// time it classified as Expired.
//
// Prune versus heartbeat. The race that loses heartbeats in a naive design is
// "prune loads the entry, finds it expired; heartbeat stores a fresh time;
// prune deletes the entry". Here both sides meet on one word; the refresh
// takes no lock. If the heartbeat's CAS lands first, the prune's CAS fails
// because the word no longer holds the time it saw, and the consumer stays.
// If the prune's CAS lands first, the heartbeat finds the word retired and
// registers the consumer again, under the bucket lock, so after the removal
// is complete. Either way, once Heartbeat(t) returns, the consumer is in the
// map with a heartbeat >= t, unless a later Deregister, a later prune that
// judged t itself expired (or a later heartbeat impossibly far ahead of its
// clock), or a later clock correction changed that.
//
// Invariant. A non-retired entry is always the map's current entry for its
// key: entries enter the map live, and leave it, or are replaced, only after
// they are retired. So writing to a live entry is always visible, and a
// Handle's cached entry stays valid until the moment it is retired.
//
// Reads. Snapshot and the per-group views walk the group index (index.go),
// one group at a time, holding a group's lock only while they copy its
// member slice's header; PruneExpired, Stats, All, WriteTo and
// CollectChanged read every entry through the registry's walk lists
// (walklist.go) in the same way, whatever the shape of the groups. The
// entries themselves are read with no lock. Snapshot takes the groups in
// key order and sorts each group's rows, so it never sorts the whole
// registry at once. None of them stops the world; in exchange they are
// weakly consistent, like sync.Map.Range, and none lists a consumer twice:
// a key has one live entry in one live group, and a walk copies every
// list's header before it reads an entry (see walklist.go).
//
// Rows. Every row, checkpoint record and mirrored row is built from one
// entry.Entry.Load: hb, the lease word, the active and registered times, and
// hb again, retried while hb moved or the lease word's tag is not hb's (a
// beat between its two writes). So a row is one state of its consumer:
// RegisteredAt and LastActive are no later than LastHeartbeat, and Leases
// are those reported at LastHeartbeat. The reader retries; the writer never
// waits.
