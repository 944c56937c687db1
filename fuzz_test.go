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
//	then ops, each an opcode byte followed by its arguments:
//	  op%8 == 0,1  Heartbeat        key, leases, clock
//	  op%8 == 2    Handle.Heartbeat key, leases, clock
//	  op%8 == 3    Deregister       key
//	  op%8 == 4    PruneExpired     ttl
//	  op%8 == 5    Snapshot         ttl
//	  op%8 == 6    CountActiveByGroup ttl
//	  op%8 == 7    a read picked by the next byte b, b%8:
//	               0 Len, 1 Lookup key ttl, 2 SnapshotGroup key ttl (the key's group),
//	               3 SnapshotQueue key ttl (the key's queue), 4 Stats ttl,
//	               5 CountByGroup ttl, 6 AppendSnapshot ttl (onto one sentinel row),
//	               7 All ttl (collected, then sorted)
//
//	key    1 byte: queue = alphabet[b&7], group = alphabet[b>>3&7], consumer = alphabet[b>>6]
//	leases 1 byte: 0, 1, MaxUint32 or the byte itself
//	clock  1 byte: b%4 == 0 forward b/4 s, 1 back b/4 s, 2 jump to extreme[b/4%len], 3 stay
//	ttl    1 byte: ttls[b%len]
//
// A missing argument byte reads as 0.

var alphabet = [8]string{"", "\x00", "|", ":", "日本", "a", "a\x00", "\xff"}

var extremes = []time.Time{
	{},                            // year 1: clamps to 1677
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

func runProgram(t *testing.T, data []byte) {
	p := &program{b: data}
	cfg := p.next()
	limit := int(cfg & 7)
	shards := 1 << (cfg >> 3 & 7)
	perGroup := int(cfg >> 6)
	reg := presence.New(presence.WithMaxConsumers(limit), presence.WithShards(shards), presence.WithMaxConsumersPerGroup(perGroup))
	ref := mutexreg.NewWithGroupLimit(limit, perGroup)
	trace := []string{fmt.Sprintf("New(WithMaxConsumers(%d), WithShards(%d), WithMaxConsumersPerGroup(%d))", limit, shards, perGroup)}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\ntrace:\n  %s", fmt.Sprintf(format, args...), strings.Join(trace, "\n  "))
	}
	handles := map[presence.Key]*presence.Handle{}
	now := extremes[4]
	for ops := 0; p.more() && ops < 400; ops++ {
		switch op := p.next() % 8; op {
		case 0, 1, 2:
			k, l := p.key(), p.leases()
			now = p.clock(now)
			var got error
			if op == 2 {
				h := handles[k]
				if h == nil {
					h = reg.Handle(k)
					handles[k] = h
				}
				got = h.Heartbeat(l, now)
				trace = append(trace, fmt.Sprintf("Handle(%q).Heartbeat(%d, %v) = %v", k, l, now, got))
			} else {
				got = reg.Heartbeat(k, l, now)
				trace = append(trace, fmt.Sprintf("Heartbeat(%q, %d, %v) = %v", k, l, now, got))
			}
			if want := ref.Heartbeat(k, l, now); !sameErr(got, want) {
				fail("heartbeat returned %v, reference %v", got, want)
			}
		case 3:
			k := p.key()
			got, want := reg.Deregister(k), ref.Deregister(k)
			trace = append(trace, fmt.Sprintf("Deregister(%q) = %v", k, got))
			if got != want {
				fail("Deregister = %v, reference %v", got, want)
			}
		case 4:
			ttl := p.ttl()
			got, want := reg.PruneExpired(now, ttl), ref.PruneExpired(now, ttl)
			trace = append(trace, fmt.Sprintf("PruneExpired(%v, %v) = %d", now, ttl, got))
			if got != want {
				fail("PruneExpired = %d, reference %d", got, want)
			}
		case 5:
			ttl := p.ttl()
			trace = append(trace, fmt.Sprintf("Snapshot(%v, %v)", now, ttl))
			compareSnapshots(t, reg.Snapshot(now, ttl), ref.Snapshot(now, ttl), fail)
		case 6:
			ttl := p.ttl()
			got, want := reg.CountActiveByGroup(now, ttl), ref.CountActiveByGroup(now, ttl)
			trace = append(trace, fmt.Sprintf("CountActiveByGroup(%v, %v) = %v", now, ttl, got))
			if !reflect.DeepEqual(got, want) {
				fail("CountActiveByGroup = %q, reference %q", got, want)
			}
		case 7:
			readOp(p, reg, ref, now, &trace, fail)
		}
	}
	trace = append(trace, "final Snapshot")
	for _, ttl := range []time.Duration{0, 30 * time.Second, math.MaxInt64} {
		compareSnapshots(t, reg.Snapshot(now, ttl), ref.Snapshot(now, ttl), fail)
	}
	// And the final state survives a checkpoint round trip.
	trace = append(trace, "WriteTo, ReadFrom into a new registry")
	var buf bytes.Buffer
	if _, err := reg.WriteTo(&buf); err != nil {
		fail("WriteTo: %v", err)
	}
	restored := presence.New()
	if _, err := restored.ReadFrom(&buf); err != nil {
		fail("ReadFrom: %v", err)
	}
	compareSnapshots(t, restored.Snapshot(now, ttl30), ref.Snapshot(now, ttl30), fail)
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
		fmt.Fprintf(&b, "\n    %q reg=%d hb=%d active=%v age=%v leases=%d %v",
			c.Key, c.RegisteredAt.UnixNano(), c.LastHeartbeat.UnixNano(), c.LastActive, c.Age, c.Leases, c.State)
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
	f.Fuzz(runProgram)
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
