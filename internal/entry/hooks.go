package entry

// Pause points for tests. Each variable, when set, is called at one point of
// the entry's protocol, so that a test can pause an operation there and
// force an interleaving that is otherwise too rare to hit; the forcing tests
// therefore run, and fail on a broken protocol, in every go test. Only tests
// set them, before starting the goroutines they pause, and clear them after
// those are done. Unset, each costs one load and one predicted branch (the
// package is internal: no user can set them).
var (
	// TestHookAfterTimeCAS is called by Refresh between moving the
	// heartbeat time and writing the lease count.
	TestHookAfterTimeCAS func()
	// TestHookAfterRetire is called after a successful retire CAS
	// (RetireIf, Retire), before the remover gives back the entry's slots.
	TestHookAfterRetire func()
	// TestHookBeforeRetire is called by Retire before it retires the entry.
	TestHookBeforeRetire func()
)

func afterTimeCAS() {
	if f := TestHookAfterTimeCAS; f != nil {
		f()
	}
}

func afterRetire() {
	if f := TestHookAfterRetire; f != nil {
		f()
	}
}

func beforeRetire() {
	if f := TestHookBeforeRetire; f != nil {
		f()
	}
}
