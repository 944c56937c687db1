package presence_test

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/seed351623e9/presence"
)

// Hash flooding. Before the registry's seed entered the hash function, a key
// was hashed with unseeded XXH64 and the seed was mixed in afterwards, so
// names with one XXH64 collided in every registry. XXH64's lane round,
// acc' = rotl(acc + in*P2, 31) * P1, is invertible in its input: for any
// first stripe of a 64-byte name, the second stripe that brings each lane
// back to a fixed state can be computed, which makes unlimited distinct
// names with one hash. floodNames builds them; the benchmark below shows
// that they now cost what random names cost.

const (
	xxP1 uint64 = 0x9e3779b185ebca87
	xxP2 uint64 = 0xc2b2ae3d27d4eb4f
)

func xxRound(acc, in uint64) uint64 { return bits.RotateLeft64(acc+in*xxP2, 31) * xxP1 }

// inverse returns the inverse of odd x modulo 2^64 (Newton's iteration).
func inverse(x uint64) uint64 {
	inv := x
	for range 5 {
		inv *= 2 - x*inv
	}
	return inv
}

// floodNames returns n distinct 64-byte names whose unseeded XXH64 is the
// same.
func floodNames(n int) []string {
	p1, p2 := xxP1, xxP2                // variables: the sums wrap, as XXH64's do
	v := [4]uint64{p1 + p2, p2, 0, -p1} // the lanes' start, seed 0
	invP1, invP2 := inverse(xxP1), inverse(xxP2)
	var target [4]uint64
	for j := range target {
		target[j] = xxRound(xxRound(v[j], 0), 0) // the lanes of 64 zero bytes
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	for len(out) < n {
		var b [64]byte
		for j := range 4 {
			x1 := rng.Uint64()
			// Solve xxRound(xxRound(v, x1), x2) == target for x2.
			x2 := (bits.RotateLeft64(target[j]*invP1, -31) - xxRound(v[j], x1)) * invP2
			binary.LittleEndian.PutUint64(b[8*j:], x1)
			binary.LittleEndian.PutUint64(b[32+8*j:], x2)
		}
		if s := string(b[:]); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func randomNames(n int) []string {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([]string, n)
	for i := range out {
		var b [64]byte
		for j := 0; j < 64; j += 8 {
			binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
		}
		out[i] = string(b[:])
	}
	return out
}

// The generator is right: its names share one XXH64, and they are distinct
// consumers of a registry.
func TestFloodNamesCollideUnderXXH64(t *testing.T) {
	names := floodNames(scale(1000))
	want := xxhash.Sum64String(names[0])
	for _, s := range names {
		if xxhash.Sum64String(s) != want {
			t.Fatalf("xxhash(%x) = %x, want %x", s, xxhash.Sum64String(s), want)
		}
	}
	r := presence.New()
	for _, s := range names {
		beat(t, r, key("q", "g", s), 1, t0)
	}
	if r.Len() != len(names) {
		t.Fatalf("Len = %d, want %d", r.Len(), len(names))
	}
}

// Names crafted to collide under unseeded XXH64 get distinct hashes in a
// registry, and two registries hash one key differently.
func TestSeedEntersTheHash(t *testing.T) {
	names := floodNames(scale(1000))
	r, other := presence.New(), presence.New()
	seen := make(map[uint64]bool, len(names))
	for _, s := range names {
		seen[presence.HashKey(r, key("q", "g", s))] = true
	}
	if len(seen) != len(names) {
		t.Fatalf("%d crafted names got %d distinct hashes", len(names), len(seen))
	}
	k := key("q", "g", "c")
	if presence.HashKey(r, k) == presence.HashKey(other, k) {
		t.Fatal("two registries hash a key alike: the seed is not in the hash")
	}
}

// BenchmarkHashFlood registers, then refreshes by key, floodNamesN names
// crafted to collide under the old hash, and as many random ones. Compare
// the crafted rows with the random rows of one run:
//
//	go test -run '^$' -bench HashFlood -count 5 .
const floodNamesN = 8192

func BenchmarkHashFlood(b *testing.B) {
	for _, set := range []struct {
		name  string
		names []string
	}{{"random", randomNames(floodNamesN)}, {"crafted", floodNames(floodNamesN)}} {
		keys := make([]presence.Key, len(set.names))
		for i, s := range set.names {
			keys[i] = presence.Key{Queue: "q", Group: "g", Consumer: s}
		}
		b.Run(set.name+"/register", func(b *testing.B) {
			for b.Loop() {
				r := presence.New()
				for _, k := range keys {
					if err := r.Heartbeat(k, 1, t0); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
		})
		b.Run(set.name+"/refresh", func(b *testing.B) {
			r := presence.New()
			for _, k := range keys {
				if err := r.Heartbeat(k, 1, t0); err != nil {
					b.Fatal(err)
				}
			}
			now := t0
			for b.Loop() {
				now = now.Add(time.Millisecond)
				for _, k := range keys {
					if err := r.Heartbeat(k, 2, now); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
		})
	}
}
