package presence_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
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
//	             bits 3-5 pick WithShards (1 << n)
//	then ops, each an opcode byte followed by its arguments:
//	  op%8 == 0,1  Heartbeat        key, leases, clock
//	  op%8 == 2    Handle.Heartbeat key, leases, clock
//	  op%8 == 3    Deregister       key
//	  op%8 == 4    PruneExpired     ttl
//	  op%8 == 5    Snapshot         ttl
//	  op%8 == 6    CountActiveByGroup ttl
//	  op%8 == 7    Len
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
	reg := presence.New(presence.WithMaxConsumers(limit), presence.WithShards(shards))
	ref := mutexreg.New(limit)
	trace := []string{fmt.Sprintf("New(WithMaxConsumers(%d), WithShards(%d))", limit, shards)}
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
			got, want := reg.Len(), ref.Len()
			trace = append(trace, fmt.Sprintf("Len() = %d", got))
			if got != want {
				fail("Len = %d, reference %d", got, want)
			}
		}
	}
	trace = append(trace, "final Snapshot")
	for _, ttl := range []time.Duration{0, 30 * time.Second, math.MaxInt64} {
		compareSnapshots(t, reg.Snapshot(now, ttl), ref.Snapshot(now, ttl), fail)
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
