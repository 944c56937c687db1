package presence

// Subscribers returns the number of subscriptions r delivers to, so that
// tests can check that Close unsubscribes.
func (r *Registry) Subscribers() int {
	if s := r.events.subs.Load(); s != nil {
		return len(*s)
	}
	return 0
}

// The pause points of hooks.go, for tests.
const (
	HookRowRead            = hookRowRead
	HookBeforeRetire       = hookBeforeRetire
	HookDeregisterRecorded = hookDeregisterRecorded
	HookJoined             = hookJoined
	HookGroupLoaded        = hookGroupLoaded
	HookListStep           = hookListStep
)

// HookPoint names a pause point.
type HookPoint = hookPoint

// SetTestHook makes every pause point call f, until the returned function
// is called. f runs on whichever goroutine reaches the point.
func SetTestHook(f func(HookPoint)) (clear func()) {
	testHook = f
	return func() { testHook = nil }
}

// Shards returns the number of shards of r.
func (r *Registry) Shards() int { return len(r.shards) }
