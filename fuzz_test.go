package presence_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/mutexreg"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// The fuzz input is a byte program run against the registry and against
// internal/mutexreg, the obviously correct reference; every result is
// compared as it comes, and the final snapshots at the end.
//
// Layout:
//
//	byte 0       config: bits 0-2 pick WithMaxConsumers (0 = none, else 1..7),
//	             bits 3-5 pick WithShards (1 << n),
//	             bits 6-7 pick WithMaxConsumersPerGroup (0 = none, else 1..3)
//	then ops, each an opcode byte followed by its arguments: the opcode
//	picks row op%opSlots of fuzzOps (a slot past its end does nothing), and
//	the row reads its own arguments:
//
//	key    1 byte: queue = alphabet[b&7], group = alphabet[b>>3&7], consumer = alphabet[b>>6]
//	leases 1 byte: 0, 1, MaxUint32 or the byte itself
//	clock  1 byte: b%4 == 0 forward b/4 s, 1 back b/4 s, 2 jump to extreme[b/4%len], 3 stay
//	ttl    1 byte: ttls[b%len]
//
// A missing argument byte reads as 0. The clock moves back by up to 63 s
// and jumps between extremes, so heartbeats cross the default clock step
// (30 s) both ways: the reference model applies the same clock rule.
//
// Adding an operation: write its view, a fuzzRun method that reads its
// arguments, runs it on both registries, records it in the trace and
// compares; teach the reference model (internal/mutexreg) any new behaviour
// it needs; then append one row at the END of fuzzOps. Never reorder, remove
// or reuse rows, and never change opSlots: saved inputs in testdata/fuzz
// name rows by position, and keep their meaning only while rows stay put.

var alphabet = [8]string{"", "\x00", "|", ":", "日本", "a", "a\x00", "\xff"}

var extremes = []time.Time{
	{},                            // the zero Time: heartbeats refuse it
	time.Unix(0, math.MinInt64),   // the earliest int64 instant
	time.Unix(0, math.MinInt64+1), // the earliest storable one
	time.Unix(0, 0),               // the epoch
	time.Unix(1_700_000_000, 0),   // a realistic now
	time.Unix(0, math.MaxInt64),   // the latest int64 instant
	time.Unix(9223372037, 0),      // just past it: clamps
	time.Unix(1<<62, 0),           // far beyond: clamps
	time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
}

const ttl30 = 30 * time.Second

var ttls = []time.Duration{0, 1, time.Second, 30 * time.Second, time.Hour, math.MaxInt64 / 2, math.MaxInt64/2 + 1, math.MaxInt64, -1, math.MinInt64}

type program struct {
	b []byte
	i int
}

func (p *program) next() byte {
	if p.i >= len(p.b) {
		return 0
	}
	p.i++
	return p.b[p.i-1]
}

func (p *program) more() bool { return p.i < len(p.b) }

func (p *program) key() presence.Key {
	b := p.next()
	return presence.Key{Queue: alphabet[b&7], Group: alphabet[b>>3&7], Consumer: alphabet[b>>6]}
}

func (p *program) leases() uint32 {
	switch b := p.next(); b {
	case 0xfe:
		return math.MaxUint32
	default:
		return uint32(b)
	}
}

func (p *program) clock(now time.Time) time.Time {
	b := p.next()
	step := time.Duration(b/4) * time.Second
	switch b % 4 {
	case 0:
		return now.Add(step)
	case 1:
		return now.Add(-step)
	case 2:
		return extremes[int(b/4)%len(extremes)]
	}
	return now
}

func (p *program) ttl() time.Duration { return ttls[int(p.next())%len(ttls)] }

func sameErr(a, b error) bool {
	return errors.Is(a, b) && errors.Is(b, a) || a == nil && b == nil
}

// opSlots is the number of opcodes: op%opSlots picks a row of fuzzOps.
// Fixed, so that adding a row changes the meaning of no saved input that
// uses the rows before it.
const opSlots = 32

// fuzzOps is the operation table. Append only; see the comment at the top.
var fuzzOps = []struct {
	name string
	run  func(*fuzzRun)
}{
	0:  {"Heartbeat", func(f *fuzzRun) { f.heartbeat(false) }},
	1:  {"Heartbeat", func(f *fuzzRun) { f.heartbeat(false) }},
	2:  {"Handle.Heartbeat", func(f *fuzzRun) { f.heartbeat(true) }},
	3:  {"Deregister", (*fuzzRun).deregister},
	4:  {"PruneExpired", (*fuzzRun).prune},
	5:  {"Snapshot", (*fuzzRun).snapshot},
	6:  {"CountActiveByGroup", (*fuzzRun).countActive},
	7:  {"a read view", (*fuzzRun).read},
	8:  {"checkpoint into a new registry", (*fuzzRun).checkpoint},
	9:  {"ReadFromAt of its own checkpoint", (*fuzzRun).readOwnCheckpoint},
	10: {"MergeAt of its own row", (*fuzzRun).mergeOwnRow},
	11: {"Heartbeat at the zero time", (*fuzzRun).zeroTime},
	12: {"HeartbeatWithTTL", func(f *fuzzRun) { f.heartbeatWithTTL(false) }},
	13: {"Handle.HeartbeatWithTTL", func(f *fuzzRun) { f.heartbeatWithTTL(true) }},
	14: {"checkpoint into a registry with TTL bounds", (*fuzzRun).rebound},
}

// fuzzRun is one program's state: the two registries, the handles, the
// clock and the trace printed on failure.
type fuzzRun struct {
	t       *testing.T
	p       *program
	reg     *presence.Registry
	ref     *mutexreg.Registry
	handles map[presence.Key]*presence.Handle
	now     time.Time
	trace   []string
	opts    []presence.Option // the registry's limits and shards, for rebound
}

func (f *fuzzRun) log(format string, args ...any) {
	f.trace = append(f.trace, fmt.Sprintf(format, args...))
}

func (f *fuzzRun) fail(format string, args ...any) {
	f.t.Helper()
	f.t.Fatalf("%s\ntrace:\n  %s", fmt.Sprintf(format, args...), strings.Join(f.trace, "\n  "))
}

func runProgram(t *testing.T, data []byte, extra ...presence.Option) {
	p := &program{b: data}
	cfg := p.next()
	limit := int(cfg & 7)
	shards := 1 << (cfg >> 3 & 7)
	perGroup := int(cfg >> 6)
	opts := []presence.Option{presence.WithMaxConsumers(limit), presence.WithShards(shards), presence.WithMaxConsumersPerGroup(perGroup)}
	opts = append(opts, extra...)
	f := &fuzzRun{
		t: t, p: p,
		reg:     presence.New(opts...),
		ref:     mutexreg.NewWithGroupLimit(limit, perGroup),
		handles: map[presence.Key]*presence.Handle{},
		now:     extremes[4],
		opts:    opts,
	}
	f.log("New(WithMaxConsumers(%d), WithShards(%d), WithMaxConsumersPerGroup(%d)) and %d options more", limit, shards, perGroup, len(extra))
	for ops := 0; p.more() && ops < 400; ops++ {
		if op := int(p.next() % opSlots); op < len(fuzzOps) {
			fuzzOps[op].run(f)
		}
	}
	f.log("final Snapshot")
	for _, ttl := range []time.Duration{0, 30 * time.Second, math.MaxInt64} {
		compareSnapshots(t, f.reg.Snapshot(f.now, ttl), f.ref.Snapshot(f.now, ttl), f.fail)
	}
	// And the final state survives a checkpoint round trip.
	f.checkpoint()
}

func (f *fuzzRun) heartbeat(byHandle bool) {
	k, l := f.p.key(), f.p.leases()
	f.now = f.p.clock(f.now)
	f.beat(k, l, f.now, byHandle)
}

// beat sends one heartbeat to both registries and compares the results.
func (f *fuzzRun) beat(k presence.Key, l uint32, now time.Time, byHandle bool) {
	var got error
	if byHandle {
		h := f.handles[k]
		if h == nil {
			h = f.reg.Handle(k)
			f.handles[k] = h
		}
		got = h.Heartbeat(l, now)
		f.log("Handle(%q).Heartbeat(%d, %v) = %v", k, l, now, got)
	} else {
		got = f.reg.Heartbeat(k, l, now)
		f.log("Heartbeat(%q, %d, %v) = %v", k, l, now, got)
	}
	if want := f.ref.Heartbeat(k, l, now); !sameErr(got, want) {
		f.fail("heartbeat returned %v, reference %v", got, want)
	}
}

func (f *fuzzRun) deregister() {
	k := f.p.key()
	got, want := f.reg.Deregister(k), f.ref.Deregister(k)
	f.log("Deregister(%q) = %v", k, got)
	if got != want {
		f.fail("Deregister = %v, reference %v", got, want)
	}
}

func (f *fuzzRun) prune() {
	ttl := f.p.ttl()
	got, want := f.reg.PruneExpired(f.now, ttl), f.ref.PruneExpired(f.now, ttl)
	f.log("PruneExpired(%v, %v) = %d", f.now, ttl, got)
	if got != want {
		f.fail("PruneExpired = %d, reference %d", got, want)
	}
}

func (f *fuzzRun) snapshot() {
	ttl := f.p.ttl()
	f.log("Snapshot(%v, %v)", f.now, ttl)
	compareSnapshots(f.t, f.reg.Snapshot(f.now, ttl), f.ref.Snapshot(f.now, ttl), f.fail)
}

func (f *fuzzRun) countActive() {
	ttl := f.p.ttl()
	got, want := f.reg.CountActiveByGroup(f.now, ttl), f.ref.CountActiveByGroup(f.now, ttl)
	f.log("CountActiveByGroup(%v, %v) = %v", f.now, ttl, got)
	if !reflect.DeepEqual(got, want) {
		f.fail("CountActiveByGroup = %q, reference %q", got, want)
	}
}

func (f *fuzzRun) read() { readOp(f.p, f.reg, f.ref, f.now, &f.trace, f.fail) }

// checkpoint writes a checkpoint of the registry and reads it into a new
// one: every record read from a live entry is one consistent state, so it
// validates, and the new registry holds the reference's rows.
func (f *fuzzRun) checkpoint() {
	f.log("WriteTo, ReadFrom into a new registry")
	var buf bytes.Buffer
	if _, err := f.reg.WriteTo(&buf); err != nil {
		f.fail("WriteTo: %v", err)
	}
	restored := presence.New()
	if _, err := restored.ReadFrom(&buf); err != nil {
		f.fail("ReadFrom: %v", err)
	}
	compareSnapshots(f.t, restored.Snapshot(f.now, ttl30), f.ref.Snapshot(f.now, ttl30), f.fail)
}

// heartbeatWithTTL is heartbeat declaring a TTL read from the next byte
// (ttls: zero, negative and saturating ones included).
func (f *fuzzRun) heartbeatWithTTL(byHandle bool) {
	k, l := f.p.key(), f.p.leases()
	f.now = f.p.clock(f.now)
	d := f.p.ttl()
	var got error
	if byHandle {
		h := f.handles[k]
		if h == nil {
			h = f.reg.Handle(k)
			f.handles[k] = h
		}
		got = h.HeartbeatWithTTL(l, d, f.now)
		f.log("Handle(%q).HeartbeatWithTTL(%d, %v, %v) = %v", k, l, d, f.now, got)
	} else {
		got = f.reg.HeartbeatWithTTL(k, l, d, f.now)
		f.log("HeartbeatWithTTL(%q, %d, %v, %v) = %v", k, l, d, f.now, got)
	}
	if want := f.ref.HeartbeatWithTTL(k, l, d, f.now); !sameErr(got, want) {
		f.fail("HeartbeatWithTTL returned %v, reference %v", got, want)
	}
}

// rebound moves the program onto a new registry with TTL bounds read from
// the next two bytes (ttls; zero and negative ones are no bound), with the
// same limits, restored from the registry's checkpoint: every declared TTL
// is clamped on the way in, as the reference clamps its own when it is
// given the bounds. The program goes on with the bounded registries.
func (f *fuzzRun) rebound() {
	lo, hi := f.p.ttl(), f.p.ttl()
	var buf bytes.Buffer
	if _, err := f.reg.WriteTo(&buf); err != nil {
		f.fail("WriteTo: %v", err)
	}
	f.reg = presence.New(append(f.opts, presence.WithTTLBounds(lo, hi))...)
	f.handles = map[presence.Key]*presence.Handle{}
	_, err := f.reg.ReadFrom(&buf)
	f.log("ReadFrom into New(..., WithTTLBounds(%v, %v)) = %v", lo, hi, err)
	if err != nil {
		f.fail("ReadFrom: %v", err)
	}
	f.ref.SetTTLBounds(lo, hi)
	compareSnapshots(f.t, f.reg.Snapshot(f.now, ttl30), f.ref.Snapshot(f.now, ttl30), f.fail)
}

// futureRows returns the reference's rows whose heartbeat is further ahead
// of now than the clock step: the rows a reader at now must refuse.
func (f *fuzzRun) futureRows() []presence.Consumer {
	var out []presence.Consumer
	for _, c := range f.ref.Snapshot(f.now, ttl30) {
		if aheadOf(c.LastHeartbeat, f.now) {
			out = append(out, c)
		}
	}
	return out
}

// aheadOf reports whether hb is more than the clock step after now, as
// stored: both clamped to the int64 nanosecond range.
func aheadOf(hb, now time.Time) bool {
	h, n := nanotime.FromTime(hb), nanotime.FromTime(now)
	return h > n && uint64(h)-uint64(n) > uint64(presence.DefaultMaxClockStep)
}

// readOwnCheckpoint merges the registry's own checkpoint into it with
// ReadFromAt at now: nothing changes, and the error says whether some row
// was refused as being from the future (or now is the zero time).
func (f *fuzzRun) readOwnCheckpoint() {
	var buf bytes.Buffer
	if _, err := f.reg.WriteTo(&buf); err != nil {
		f.fail("WriteTo: %v", err)
	}
	_, err := f.reg.ReadFromAt(&buf, f.now)
	f.log("ReadFromAt(own checkpoint, %v) = %v", f.now, err)
	switch {
	case f.now.IsZero():
		if !errors.Is(err, presence.ErrZeroTime) {
			f.fail("ReadFromAt at the zero time = %v", err)
		}
	case errors.Is(err, presence.ErrFutureTime) != (len(f.futureRows()) > 0):
		f.fail("ReadFromAt = %v, rows ahead of now: %s", err, rowsString(f.futureRows()))
	case err != nil && !errors.Is(err, presence.ErrFutureTime):
		f.fail("ReadFromAt = %v", err)
	}
	compareSnapshots(f.t, f.reg.Snapshot(f.now, ttl30), f.ref.Snapshot(f.now, ttl30), f.fail)
}

// mergeOwnRow merges the reference's row of a key into the registry with
// MergeAt at now: a row from the future is refused, any other changes
// nothing.
func (f *fuzzRun) mergeOwnRow() {
	k := f.p.key()
	c, ok := f.ref.Lookup(k, f.now, ttl30)
	if !ok {
		return
	}
	err := f.reg.MergeAt(c, f.now)
	f.log("MergeAt(row of %q, %v) = %v", k, f.now, err)
	switch {
	case f.now.IsZero():
		if !errors.Is(err, presence.ErrZeroTime) {
			f.fail("MergeAt at the zero time = %v", err)
		}
	case aheadOf(c.LastHeartbeat, f.now):
		if !errors.Is(err, presence.ErrFutureTime) {
			f.fail("MergeAt of a row from the future = %v", err)
		}
	case err != nil:
		f.fail("MergeAt = %v", err)
	}
	compareSnapshots(f.t, f.reg.Snapshot(f.now, ttl30), f.ref.Snapshot(f.now, ttl30), f.fail)
}

// zeroTime sends a heartbeat at the zero time, by key or handle: both
// registries refuse it with ErrZeroTime and change nothing.
func (f *fuzzRun) zeroTime() {
	k, l := f.p.key(), f.p.leases()
	f.beat(k, l, time.Time{}, l%2 == 1)
}

// readOp runs one of the read-only views on both registries and compares.
func readOp(p *program, reg *presence.Registry, ref *mutexreg.Registry, now time.Time, trace *[]string, fail func(string, ...any)) {
	which := p.next() % 8
	if which == 0 {
		got, want := reg.Len(), ref.Len()
		*trace = append(*trace, fmt.Sprintf("Len() = %d", got))
		if got != want {
			fail("Len = %d, reference %d", got, want)
		}
		return
	}
	var k presence.Key
	if which <= 3 {
		k = p.key()
	}
	ttl := p.ttl()
	g := presence.GroupKey{Queue: k.Queue, Group: k.Group}
	var got, want any
	switch which {
	case 1:
		c1, ok1 := reg.Lookup(k, now, ttl)
		c2, ok2 := ref.Lookup(k, now, ttl)
		*trace = append(*trace, fmt.Sprintf("Lookup(%q, %v, %v) = %v", k, now, ttl, ok1))
		got, want = []any{rowsString([]presence.Consumer{c1}), ok1}, []any{rowsString([]presence.Consumer{c2}), ok2}
	case 2:
		*trace = append(*trace, fmt.Sprintf("SnapshotGroup(%q, %v, %v)", g, now, ttl))
		got, want = rowsString(reg.SnapshotGroup(g, now, ttl)), rowsString(ref.SnapshotGroup(g, now, ttl))
	case 3:
		*trace = append(*trace, fmt.Sprintf("SnapshotQueue(%q, %v, %v)", k.Queue, now, ttl))
		got, want = rowsString(reg.SnapshotQueue(k.Queue, now, ttl)), rowsString(ref.SnapshotQueue(k.Queue, now, ttl))
	case 4:
		*trace = append(*trace, fmt.Sprintf("Stats(%v, %v)", now, ttl))
		got, want = reg.Stats(now, ttl), ref.Stats(now, ttl)
	case 5:
		*trace = append(*trace, fmt.Sprintf("CountByGroup(%v, %v)", now, ttl))
		got, want = reg.CountByGroup(now, ttl), ref.CountByGroup(now, ttl)
	case 6:
		*trace = append(*trace, fmt.Sprintf("AppendSnapshot(sentinel, %v, %v)", now, ttl))
		sentinel := presence.Consumer{Key: presence.Key{Queue: "\xff\xff sentinel"}}
		got = rowsString(reg.AppendSnapshot([]presence.Consumer{sentinel}, now, ttl))
		want = rowsString(append([]presence.Consumer{sentinel}, ref.Snapshot(now, ttl)...))
	case 7:
		*trace = append(*trace, fmt.Sprintf("All(%v, %v)", now, ttl))
		var all []presence.Consumer
		for c := range reg.All(now, ttl) {
			all = append(all, c)
		}
		slices.SortFunc(all, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
		got, want = rowsString(all), rowsString(ref.Snapshot(now, ttl))
	}
	if !reflect.DeepEqual(got, want) {
		fail("read %d differs:\n got  %v\n want %v", which, got, want)
	}
}

func compareSnapshots(t *testing.T, got, want []presence.Consumer, fail func(string, ...any)) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		fail("snapshot differs:\n got  %s\n want %s", rowsString(got), rowsString(want))
	}
}

// rowsString prints rows with quoted keys, so that NUL bytes and invalid
// UTF-8 in names stay readable.
func rowsString(rows []presence.Consumer) string {
	var b strings.Builder
	for _, c := range rows {
		fmt.Fprintf(&b, "\n    %q reg=%d hb=%d active=%v age=%v leases=%d %v ttl=%v",
			c.Key, c.RegisteredAt.UnixNano(), c.LastHeartbeat.UnixNano(), c.LastActive, c.Age, c.Leases, c.State, c.TTL)
	}
	return b.String()
}

func FuzzRegistry(f *testing.F) {
	// Beat one key twice, 1 s apart, and snapshot with a 30 s TTL.
	f.Add([]byte{0x00, 0, 0x01, 0x01, 4, 0, 0x01, 0x02, 4, 5, 3})
	// Limit 1: register key 1, then key 2 is refused; Len; Deregister 1; key 2 fits.
	f.Add([]byte{0x01, 0, 1, 0, 3, 0, 2, 0, 3, 7, 3, 1, 0, 2, 0, 3, 7, 5, 3})
	// Time goes back: beat at now, then 5 s earlier (ignored), with other leases.
	f.Add([]byte{0x00, 0, 9, 7, 3, 0, 9, 8, 21, 5, 3})
	// Jump to the extremes: year 1, then 2262, then past it; snapshot with ttl MaxInt64.
	f.Add([]byte{0x08, 0, 3, 0, 2, 0, 4, 0, 22, 0, 5, 0, 26, 5, 7, 4, 3, 5, 0})
	// Handle beats across Deregister and PruneExpired with ttl 0.
	f.Add([]byte{0x10, 2, 0x41, 1, 3, 3, 0x41, 2, 0x41, 2, 4, 4, 0, 2, 0x41, 3, 0, 7, 6, 3})
	// Separator-like names that must stay distinct: "\x00" vs "" vs "a\x00".
	f.Add([]byte{0x00, 0, 0x01, 0, 3, 0, 0x08, 0, 3, 0, 0x30, 0, 3, 0, 0x06, 0, 3, 7, 6, 3, 5, 3})
	// Leases at MaxUint32, then a prune with a negative TTL.
	f.Add([]byte{0x00, 0, 5, 0xfe, 3, 0, 6, 0xfe, 4, 4, 8, 5, 8})
	// Per-group limit 1 (config bits 6-7): a second consumer of group ("", "")
	// is refused, one in another group is not; then every read view.
	f.Add([]byte{0x40, 0, 0x00, 1, 3, 0, 0x40, 1, 3, 0, 0x08, 2, 3,
		7, 0, 7, 1, 0x00, 3, 7, 2, 0x00, 3, 7, 3, 0x00, 3, 7, 4, 3, 7, 5, 3, 7, 6, 3, 7, 7, 3})
	// LastActive: beat with leases, then without, then an older beat with leases.
	f.Add([]byte{0x00, 0, 7, 5, 3, 0, 7, 0, 4, 0, 7, 9, 5, 7, 1, 7, 3})
	// Clock step: a beat 40 s older than the stored one corrects it; then
	// a checkpoint, a ReadFromAt and a MergeAt of the registry's own rows.
	f.Add([]byte{0x00, 0, 0x05, 1, 3, 0, 0x05, 2, 161, 5, 3, 8, 9, 10, 0x05})
	// A beat 32 s ahead, then the clock 63 s back: the prune removes the
	// consumer whose heartbeat is in its future; a zero-time beat by handle.
	f.Add([]byte{0x00, 0, 0x05, 1, 0x80, 0, 0x06, 0, 0xfd, 4, 4, 5, 3, 9, 11, 0x05, 1})
	// Declared TTLs: key 5 declares 1 s by key, key 6 30 s by handle; 2 s
	// later a snapshot (ttl 1 h) has 5 stale and 6 active, then a prune
	// at 3 s removes 5 only. Then bounds [1 s, 1 s] clamp key 6's 30 s to
	// 1 s in a restore, and key 6 re-declares 1 ns, which is raised to 1 s.
	f.Add([]byte{0x00, 12, 0x05, 1, 3, 2, 13, 0x06, 1, 3, 3, 0, 0x07, 0, 8, 5, 4,
		0, 0x07, 0, 4, 4, 4, 14, 2, 2, 5, 3, 13, 0x06, 0, 3, 1, 5, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		runProgram(t, data)
		// Again with every key's hash cut to 2 bits, so that most keys
		// share their hash with others and take the shards' spill path.
		runProgram(t, data, presence.WithHashBits(2))
	})
}

// refClassify is Classify computed with math/big: no saturation tricks,
// just the rule.
func refClassify(age, ttl time.Duration) presence.State {
	a, t := big.NewInt(max(int64(age), 0)), big.NewInt(max(int64(ttl), 0))
	if a.Cmp(t) <= 0 {
		return presence.Active
	}
	if a.Cmp(new(big.Int).Mul(t, big.NewInt(2))) <= 0 {
		return presence.Stale
	}
	return presence.Expired
}

func FuzzClassify(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64/2+1)) // 2·ttl would overflow
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64/2))
	f.Add(int64(-1), int64(math.MinInt64)) // negatives count as 0
	f.Add(int64(60e9), int64(30e9))        // exactly 2·ttl
	f.Fuzz(func(t *testing.T, age, ttl int64) {
		got, want := presence.Classify(time.Duration(age), time.Duration(ttl)), refClassify(time.Duration(age), time.Duration(ttl))
		if got != want {
			t.Fatalf("Classify(%d, %d) = %v, want %v", age, ttl, got, want)
		}
	})
}
