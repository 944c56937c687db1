package entry

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// Tests for behaviours that mutation testing found unchecked by this
// package's own tests (gremlins runs each mutant of a package against that
// package's tests only). The file name sorts before entry_test.go, so that
// go test runs these first: a mutant that makes Load spin forever then
// fails the bounded TestLoadGivesUpOnStalledWriter (with -failfast, as
// gremlins runs) instead of hanging an unbounded test.

func wantState(t *testing.T, e *Entry, want State) {
	t.Helper()
	if got, ok := e.Load(); !ok || got != want {
		t.Fatalf("Load() = %+v, %v; want %+v", got, ok, want)
	}
}

// Load returns rather than spinning forever while a writer is stalled
// between its two writes. The wait is bounded so that a Load that never
// gives up fails the test instead of hanging it.
func TestLoadGivesUpOnStalledWriter(t *testing.T) {
	e := New("q", "g", "c", 10, 3)
	e.hb.Store(30) // a writer stalled after moving the time
	done := make(chan State, 1)
	go func() {
		st, _ := e.Load()
		done <- st
	}()
	select {
	case st := <-done:
		if st.HB != 30 || st.Registered != 10 || st.Active != 30 || st.Leases != 3 {
			t.Fatalf("Load() = %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Load is still waiting for a stalled writer after 5 s")
	}
}

// A beat at the same time as the last one is still a write: its lease
// count replaces the stored one.
func TestRefreshAtSameTimeWritesLeases(t *testing.T) {
	e := New("q", "g", "c", 10, 1)
	if !e.Refresh(10, 4) {
		t.Fatal("refresh of a live entry")
	}
	wantState(t, e, State{Registered: 10, HB: 10, Active: 10, Leases: 4})
	e.Refresh(10, 0)
	wantState(t, e, State{Registered: 10, HB: 10, Active: 10, Leases: 0})
}

// Active moves only when leases drop from above 0 to 0: a consumer that
// never had leases has none, however often it beats.
func TestActiveOnlyOnDropToZero(t *testing.T) {
	e := New("q", "g", "c", 10, 0)
	e.Refresh(20, 0)
	e.Refresh(30, 0)
	wantState(t, e, State{Registered: 10, HB: 30, Active: nanotime.None})
	if e.ActiveTime() != (time.Time{}) {
		t.Fatal("ActiveTime of a consumer that never had leases")
	}
	e.Refresh(40, 2)
	wantState(t, e, State{Registered: 10, HB: 40, Active: 40, Leases: 2})
	if e.Active() != 40 || !e.ActiveTime().Equal(time.Unix(0, 40)) {
		t.Fatalf("Active() = %d while leases are held", e.Active())
	}
	e.Refresh(50, 0)
	e.Refresh(60, 0)
	wantState(t, e, State{Registered: 10, HB: 60, Active: 40})
	e.Retire()
	if e.Active() != nanotime.None {
		t.Fatal("a retired entry has no active time")
	}
}

// RetireIf retires only at the heartbeat it was given, and never for
// nanotime.None; Retire retires once.
func TestRetireIf(t *testing.T) {
	e := New("q", "g", "c", 10, 0)
	if e.RetireIf(nanotime.None) || e.RetireIf(9) || e.RetireIf(11) || !e.Live() {
		t.Fatal("RetireIf retired at another heartbeat")
	}
	if !e.RetireIf(10) || e.Live() || e.RetireIf(10) || e.Retire() {
		t.Fatal("RetireIf at the current heartbeat")
	}
	if e.HB() != nanotime.None || e.RetireIf(nanotime.None) {
		t.Fatal("a retired entry is retired again")
	}
}

// Restore keeps a record's times; Merge moves none of them backwards.
func TestRestoreAndMerge(t *testing.T) {
	e := Restore("q", "g", "c", 5, 20, 15, 0)
	wantState(t, e, State{Registered: 5, HB: 20, Active: 15})
	if q, g, c := e.Key(); q != "q" || g != "g" || c != "c" {
		t.Fatal("Restore lost the key")
	}

	// An older record: only the earlier registration is taken.
	if !e.Merge(1, 10, 8, 9) {
		t.Fatal("merge into a live entry")
	}
	wantState(t, e, State{Registered: 1, HB: 20, Active: 15})
	// A later registration and active time than stored: neither is taken
	// back or forward beyond the rules.
	e.Merge(3, 20, 12, 0)
	wantState(t, e, State{Registered: 1, HB: 20, Active: 15})
	// A newer record: its heartbeat and leases, and its later active time.
	e.Merge(2, 30, 18, 0)
	wantState(t, e, State{Registered: 1, HB: 30, Active: 18})
	e.Merge(2, 40, 40, 6)
	wantState(t, e, State{Registered: 1, HB: 40, Active: 40, Leases: 6})

	e.SetFlag(FlagDirty, false)
	e.Merge(0, 40, nanotime.None, 6)
	if e.Flags()&FlagDirty == 0 || e.Registered() != 0 {
		t.Fatal("a merge that moved the registration did not mark the entry")
	}
	e.Retire()
	if e.Merge(0, 50, 50, 1) {
		t.Fatal("merge into a retired entry")
	}
}

// SetFlag changes only its own bit.
func TestSetFlagKeepsOtherBits(t *testing.T) {
	e := New("q", "g", "c", 0, 0) // dirty
	e.SetFlag(FlagStale, true)
	if !e.SetFlag(FlagDirty, false) || e.Flags() != FlagStale {
		t.Fatalf("flags %b after clearing FlagDirty", e.Flags())
	}
	if !e.SetFlag(FlagDirty, true) || e.Flags() != FlagStale|FlagDirty {
		t.Fatalf("flags %b after setting FlagDirty", e.Flags())
	}
}

// Every entry's block holds its whole key: entries allocated one after the
// other, with keys of many lengths (around the uvarint steps too), read
// back intact, so no block is shorter than its key.
func TestManyKeysStayIntact(t *testing.T) {
	type want struct{ q, g, c string }
	var es []*Entry
	var ws []want
	for i := 0; i < 600; i++ {
		w := want{
			q: strings.Repeat("q", i%130),
			g: fmt.Sprint("g", i),
			c: strings.Repeat(string(rune('a'+i%26)), (i*7)%300),
		}
		es = append(es, New(w.q, w.g, w.c, int64(i), uint32(i)))
		ws = append(ws, w)
	}
	for i, e := range es {
		q, g, c := e.Key()
		if q != ws[i].q || g != ws[i].g || c != ws[i].c {
			t.Fatalf("entry %d: key (%d, %q, %d bytes), want (%d, %q, %d bytes)", i, len(q), g, len(c), len(ws[i].q), ws[i].g, len(ws[i].c))
		}
		wantState(t, e, State{Registered: int64(i), HB: int64(i), Active: activeIf(i), Leases: uint32(i)})
	}
}

func activeIf(i int) int64 {
	if i > 0 {
		return int64(i)
	}
	return nanotime.None
}

// An entry with a short key is one small block: the header and key bytes
// rounded up to whole words, nothing more.
func TestEntryBlockSize(t *testing.T) {
	const n = 2000
	es := make([]*Entry, n)
	// The least of a few trials: a goroutine of another test, or the
	// runtime, may allocate during one of them.
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range es {
			es[i] = New("q", "g", "c", 0, 0) // 36 + 3 + 3 bytes: 48 with padding
		}
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(es)
		least = min(least, (after.TotalAlloc-before.TotalAlloc)/n)
	}
	if least > 48 {
		t.Fatalf("%d bytes per entry, want 48", least)
	}
}

// On one P, so that the goroutines below take turns only where one blocks
// or yields: a Load that finds a beat between its two writes waits for the
// beat to finish, yielding meanwhile, and returns the beat's lease count
// with its time. The beat is paused at TestHookAfterTimeCAS and resumed
// only after the reader has started its Load and yielded 50 times, so a
// Load that does not wait, or stops yielding and gives up, reads the old
// lease count every time.
func TestLoadWaitsForBeatInFlight(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e := New("q", "g", "c", 10, 3)
	paused, resume := make(chan struct{}), make(chan struct{})
	TestHookAfterTimeCAS = func() {
		close(paused)
		<-resume
	}
	defer func() { TestHookAfterTimeCAS = nil }()
	wrote := make(chan struct{})
	go func() {
		e.Refresh(20, 5)
		close(wrote)
	}()
	<-paused
	TestHookAfterTimeCAS = nil

	reading := make(chan struct{}, 1)
	got := make(chan State, 1)
	go func() {
		reading <- struct{}{} // the test goroutine runs again only when this one yields
		st, _ := e.Load()
		got <- st
	}()
	<-reading
	for i := 0; i < 50; i++ { // the beat stays paused for many of the reader's yields
		runtime.Gosched()
	}
	close(resume)
	<-wrote
	if st := <-got; st != (State{Registered: 10, HB: 20, Active: 20, Leases: 5}) {
		t.Fatalf("Load() = %+v during a beat to 20 with 5 leases", st)
	}
}

// A Load that finds the entry consistent returns at once, without
// yielding the processor: on one P, a goroutine that counts its turns gets
// none while the test goroutine loads.
func TestLoadOfQuietEntryNeverYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e := New("q", "g", "c", 10, 6) // 6: lease bits other than the lowest
	e.Refresh(11, 6)
	var turns, stop atomic.Int64
	started := make(chan struct{})
	go func() {
		close(started)
		for stop.Load() == 0 {
			turns.Add(1)
			runtime.Gosched()
		}
	}()
	<-started
	before := turns.Load()
	for i := 0; i < 100; i++ {
		if st, _ := e.Load(); st.Leases != 6 || st.HB != 11 {
			t.Fatalf("Load() = %+v", st)
		}
	}
	after := turns.Load()
	stop.Store(1)
	if after != before {
		t.Fatalf("100 Loads of a quiet entry yielded %d times", after-before)
	}
}

// A beat older than the stored one by at most the step is stale news; one
// older by more is a clock correction that replaces the heartbeat and
// clamps the registration and active times to it.
func TestBeatClockStep(t *testing.T) {
	e := New("q", "g", "c", 100, 2) // registered and active at 100
	if got := e.Beat(90, 7, 10); got != Recorded {
		t.Fatalf("a beat exactly one step older: %v, want Recorded", got)
	}
	wantState(t, e, State{Registered: 100, HB: 100, Active: 100, Leases: 2})
	if got := e.Beat(89, 0, 10); got != Corrected {
		t.Fatalf("a beat more than one step older: %v, want Corrected", got)
	}
	wantState(t, e, State{Registered: 89, HB: 89, Active: 89})
	if got := e.Beat(95, 1, 10); got != Recorded {
		t.Fatalf("a newer beat: %v, want Recorded", got)
	}
	wantState(t, e, State{Registered: 89, HB: 95, Active: 95, Leases: 1})

	old := Restore("q", "g", "c", 10, 100, 20, 0) // registered and active long before
	if got := old.Beat(50, 0, 10); got != Corrected {
		t.Fatalf("correction: %v", got)
	}
	wantState(t, old, State{Registered: 10, HB: 50, Active: 20})
	old.Retire()
	if got := old.Beat(200, 0, 10); got != Retired {
		t.Fatalf("a beat on a retired entry: %v", got)
	}
}
