package presence

// Pause points for tests
//
// A race between two operations that lasts a few instructions is too rare
// to hit by chance, so a concurrency test that waits for it passes whether
// or not the protocol is right. Each point below lets a test run code at the
// exact moment the race needs (typically a heartbeat of the same consumer),
// so that a broken protocol fails the test every time, in a plain go test.
// Unset, a point costs one load and one predicted branch; none is on the
// refresh path (the entry's own points are in internal/entry/hooks.go). A
// point other than hookJoined and hookGroupLoaded is never reached under a
// bucket lock, so a test may run any registry operation from it.

// hookPoint names a pause point.
type hookPoint uint8

const (
	// hookRowRead: row has read an entry's state and not yet returned it.
	hookRowRead hookPoint = iota + 1
	// hookBeforeRetire: PruneExpired has found an entry expired and not
	// yet removed it.
	hookBeforeRetire
	// hookDeregisterRecorded: Deregister has found its entry and not yet
	// retired it or recorded the deletion for mirrors.
	hookDeregisterRecorded
	// hookJoined: a registration has put its new entry in its group and
	// in its walk list (walklist.go), where walks see it, and not yet in
	// its shard's map, where lookups do. Unlike the others, this point is reached under
	// the key's bucket lock (and, for a key in its shard's spill, under the
	// spill's mutex): a test may not run an operation on that key, or on a
	// spilled key of that shard, from it on the same goroutine.
	hookJoined
	// hookGroupLoaded: a registration has looked up its group in the
	// index, found or not, and not yet made or joined it. Like hookJoined,
	// it is reached under the key's bucket lock, with the same limits.
	hookGroupLoaded
	// hookListStep: a walk of a queue's list of groups (index.go) has
	// passed a group and not yet read the group's next pointer.
	hookListStep
)

// testHook is set only by tests (export_mutation_test.go), before the
// goroutines it pauses start and cleared after they end.
var testHook func(hookPoint)

func pause(p hookPoint) {
	if f := testHook; f != nil {
		f(p)
	}
}
