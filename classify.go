package presence

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/seed351623e9/presence/internal/nanotime"
)

// DefaultTTL is the heartbeat budget most brokers use: a consumer that beat
// within the last 30 seconds is active. The registry itself takes the TTL as
// an argument on every read, so one registry can be viewed with several.
const DefaultTTL = 30 * time.Second

// State is the lifecycle bucket of a consumer, derived from the age of its
// last heartbeat and a TTL by Classify. Readers of a snapshot use State and
// never re-derive the rule.
type State uint8

const (
	// Active means the last heartbeat is at most one TTL old.
	Active State = iota
	// Stale means the consumer missed at least one heartbeat budget but is
	// within two: it is still listed, and dashboards should warn.
	Stale
	// Expired means the last heartbeat is more than two TTLs old. The
	// consumer is presumed dead and PruneExpired removes it; until then it
	// is still listed, so that a dashboard can say "last seen 5m ago".
	Expired
)

var stateNames = [...]string{Active: "active", Stale: "stale", Expired: "expired"}

// String returns "active", "stale" or "expired", or "State(n)" for a value
// outside the three.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ErrInvalidState is returned by State.UnmarshalText for text other than
// "active", "stale" or "expired", and by State.MarshalText for a value
// outside the three states.
var ErrInvalidState = errors.New("presence: invalid state")

// MarshalText implements encoding.TextMarshaler. It fails with
// ErrInvalidState for a value that is not one of the three states.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, ErrInvalidState
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts exactly
// "active", "stale" and "expired" and fails with ErrInvalidState otherwise,
// leaving s unchanged.
func (s *State) UnmarshalText(b []byte) error {
	for i, name := range stateNames {
		if string(b) == name {
			*s = State(i)
			return nil
		}
	}
	return ErrInvalidState
}

// Classify returns the State of a consumer whose last heartbeat is age old,
// under heartbeat budget ttl:
//
//	age <= ttl    Active
//	age <= 2·ttl  Stale
//	otherwise     Expired
//
// A negative ttl counts as 0 and a negative age as 0. 2·ttl saturates at the
// largest Duration instead of overflowing, so Classify is defined for every
// pair of inputs.
func Classify(age, ttl time.Duration) State {
	if ttl < 0 {
		ttl = 0
	}
	switch {
	case age <= ttl:
		return Active
	case age <= double(ttl):
		return Stale
	default:
		return Expired
	}
}

// double returns 2·d for d >= 0, saturating at the largest Duration.
func double(d time.Duration) time.Duration {
	if d > math.MaxInt64/2 {
		return math.MaxInt64
	}
	return 2 * d
}

// classifyAt is Classify for a heartbeat at Unix nanoseconds last, seen at
// Unix nanoseconds now. It also returns the age it classified.
func classifyAt(now, last int64, ttl time.Duration) (time.Duration, State) {
	age := nanotime.Age(now, last)
	return age, Classify(age, ttl)
}

// window classifies heartbeats seen at one time under one read TTL, as
// classifyAt(now, hb, judge(declared, ttl)) does, for walks that classify
// every consumer: a consumer that declared no TTL costs two comparisons
// with bounds computed once per walk, where classifyAt takes an age, a
// clamp and a doubling.
type window struct {
	now int64
	// active is the earliest heartbeat that is Active at now under the
	// read's TTL; stale the earliest that is at least Stale. Earlier ones
	// are Expired.
	active, stale int64
}

func newWindow(now int64, ttl time.Duration) window {
	ttl = max(ttl, 0)
	return window{now: now, active: since(now, ttl), stale: since(now, double(ttl))}
}

// since returns the earliest heartbeat whose age at now is at most d >= 0:
// now-d, or math.MinInt64 when every heartbeat is, because now-d is below
// the int64 range or d is the largest Duration, which Age saturates at.
func since(now int64, d time.Duration) int64 {
	if d == math.MaxInt64 {
		return math.MinInt64
	}
	if s := now - int64(d); s <= now {
		return s
	}
	return math.MinInt64 // now-d wrapped around from below the range
}

// state returns the state of a consumer whose last heartbeat is hb and
// which declared TTL declared (0: none).
// Loops over many consumers spell it out as
//
//	st := w.plain(hb)
//	if declared != 0 {
//		st = w.own(hb, declared)
//	}
//
// which the compiler inlines but for the call to own.
func (w *window) state(hb int64, declared time.Duration) State {
	if declared != 0 {
		return w.own(hb, declared)
	}
	return w.plain(hb)
}

// plain is state for a consumer that declared no TTL.
func (w *window) plain(hb int64) State {
	switch {
	case hb >= w.active:
		return Active
	case hb >= w.stale:
		return Stale
	}
	return Expired
}

// own is state for a consumer judged by the TTL it declared.
func (w *window) own(hb int64, declared time.Duration) State {
	_, st := classifyAt(w.now, hb, declared)
	return st
}

// judge returns the TTL that a consumer which declared declared (0 for
// none) is judged by in a read that passes ttl: its own if it declared one,
// else ttl, a negative ttl counting as 0.
func judge(declared, ttl time.Duration) time.Duration {
	if declared != 0 {
		return declared
	}
	return max(ttl, 0)
}
