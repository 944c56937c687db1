//go:build presencehooks

package entry

// TestHookAfterTimeCAS, when set, is called by Entry.Refresh between moving
// the heartbeat time and writing the lease count. It exists only in builds
// with the presencehooks tag.
var TestHookAfterTimeCAS func()

func afterTimeCAS() {
	if f := TestHookAfterTimeCAS; f != nil {
		f()
	}
}

// TestHookAfterRetire, when set, is called after a successful retire CAS,
// before the remover gives back the entry's slots. It exists only in builds
// with the presencehooks tag.
var TestHookAfterRetire func()

func afterRetire() {
	if f := TestHookAfterRetire; f != nil {
		f()
	}
}

// TestHookBeforeRetire, when set, is called by Entry.Retire before it
// retires the entry. It exists only in builds with the presencehooks tag.
var TestHookBeforeRetire func()

func beforeRetire() {
	if f := TestHookBeforeRetire; f != nil {
		f()
	}
}
