package presenceredis

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/seed351623e9/presence"
)

// Key layout. Consumers are spread over Buckets buckets by their group, so
// that a group's consumers share a bucket. Bucket b is one hash, in one
// Redis Cluster slot through its hash tag T:
//
//	PREFIX:{T}   hash: the bucket's consumers and its loss marker
//	               "epoch" -> a random token, made when the hash is made
//	               "seq"   -> a counter that every merge increments
//	               FIELD   -> the record of a consumer (see encodeRecord)
//
// FIELD is len(queue) ":" len(group) ":" queue group consumer; the bucket
// is the xxhash of len(queue) ":" queue group, modulo Buckets. The marker
// fields contain no ':' and cannot collide with a FIELD.
//
// So one script call updates a batch of a bucket's consumers and checks
// its marker atomically, in one slot; the data is Buckets keys on as many
// slots, with no directory and no hot key; and a read of everything is one
// HGETALL per bucket, sent to each master in one pipeline. The marker lives
// in the hash it guards: a master that loses the bucket loses its marker.

// Buckets is the number of directory buckets. Their slots are spread evenly
// over the 16384 slots of a Redis Cluster (64 apart), so that any split of
// the slots into ranges gives each master its share of groups.
const Buckets = 256

// slotCount is the number of Redis Cluster hash slots.
const slotCount = 16384

// bucketTags holds, for every bucket b, a hash tag whose slot is
// b*slotCount/Buckets + 32, found by trying decimal strings in order, so that
// every broker computes the same tags.
var bucketTags = sync.OnceValue(func() [Buckets]string {
	var tags [Buckets]string
	left := Buckets
	for n := 0; left > 0; n++ {
		s := strconv.Itoa(n)
		slot := keySlot(s)
		if slot%(slotCount/Buckets) != slotCount/Buckets/2 {
			continue
		}
		if b := slot / (slotCount / Buckets); tags[b] == "" {
			tags[b] = s
			left--
		}
	}
	return tags
})

// bucketSlot returns the Redis Cluster slot of bucket b.
func bucketSlot(b int) int { return b*(slotCount/Buckets) + slotCount/Buckets/2 }

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// keySlot is Redis Cluster's slot of a key with no hash tag: CRC16 (XMODEM)
// modulo 16384.
func keySlot(key string) int {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^key[i]]
	}
	return int(crc) % slotCount
}

// groupPrefix returns the start of the fields of group (q, g), and the
// group's bucket.
func groupPrefix(q, g string) (prefix string, bucket int) {
	lq := strconv.Itoa(len(q))
	return lq + ":" + strconv.Itoa(len(g)) + ":" + q + g, bucketOf(q, g)
}

// bucketOf returns the bucket of group (q, g): the hash of len(q) ":" q g,
// computed without building that string, so that it allocates nothing.
func bucketOf(q, g string) int {
	var d xxhash.Digest
	d.Reset()
	var n [20]byte
	_, _ = d.Write(strconv.AppendInt(n[:0], int64(len(q)), 10))
	_, _ = d.WriteString(":")
	_, _ = d.WriteString(q)
	_, _ = d.WriteString(g)
	return int(d.Sum64() % Buckets)
}

// fieldOf returns k's field in its bucket's hash, and the bucket.
func fieldOf(k presence.Key) (string, int) {
	prefix, b := groupPrefix(k.Queue, k.Group)
	return prefix + k.Consumer, b
}

// bucketKey returns the key of bucket b's hash.
func (m *Mirror) bucketKey(b int) string { return m.bucketKeys[b] }

func bucketKeys(prefix string) (out [Buckets]string) {
	tags := bucketTags()
	for b := range out {
		out[b] = prefix + ":{" + tags[b] + "}"
	}
	return out
}

// parseField returns the key of a consumer's field; ok is false for the
// marker fields and anything else that is not a field.
func parseField(f string) (k presence.Key, ok bool) {
	lq, rest, ok1 := strings.Cut(f, ":")
	lg, rest, ok2 := strings.Cut(rest, ":")
	nq, err1 := strconv.Atoi(lq)
	ng, err2 := strconv.Atoi(lg)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || nq < 0 || ng < 0 || nq > len(rest) || ng > len(rest)-nq {
		return presence.Key{}, false
	}
	return presence.Key{Queue: rest[:nq], Group: rest[nq : nq+ng], Consumer: rest[nq+ng:]}, true
}

// encodeTime writes ns as a 20-digit offset-binary decimal: string order is
// time order, and math.MinInt64 (no active time) is all zeros.
func encodeTime(ns int64) string { return string(appendTime(nil, ns)) }

// appendTime appends encodeTime(ns) to dst.
func appendTime(dst []byte, ns int64) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], uint64(ns)^(1<<63), 10)
	for range 20 - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

func decodeTime(s string) (int64, bool) {
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil || len(s) != 20 {
		return 0, false
	}
	return int64(u ^ (1 << 63)), true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// recordLen is the length of every record; recordLenV1 that of records
// written before consumers could declare a TTL, which have no TTL field and
// are still read, as declaring none.
const (
	recordLen   = 3*21 + 11 + 10
	recordLenV1 = 3*21 + 10
)

// encodeRecord returns the stored record of c, "registered heartbeat
// active leases ttl": the times as encodeTime writes them, the leases and
// the declared TTL (in milliseconds, 0 for none) as 10 zero-padded digits
// each. Every field is at a fixed offset, so that the merge script cuts
// them out without parsing. At 84 bytes, a record is also over Redis's
// default hash-max-listpack-value (64), so that a group's hash is a hash
// table, where writing a field costs O(1) rather than a scan of the group.
func encodeRecord(c presence.Consumer) string {
	var rec [recordLen]byte
	return string(appendRecord(rec[:0], c))
}

// appendRecord appends encodeRecord(c) to dst.
func appendRecord(dst []byte, c presence.Consumer) []byte {
	for _, t := range [3]time.Time{c.RegisteredAt, c.LastHeartbeat, c.LastActive} {
		dst = append(appendTime(dst, unixNano(t)), ' ')
	}
	dst = append(appendDigits(dst, uint64(c.Leases)), ' ')
	var ms uint64
	if c.TTL > 0 {
		ms = uint64(c.TTL / time.Millisecond)
		if c.TTL%time.Millisecond != 0 {
			ms++ // a registry keeps declared TTLs in whole milliseconds, rounded up
		}
	}
	return appendDigits(dst, min(ms, math.MaxUint32))
}

// appendDigits appends v < 10^10 as 10 zero-padded digits.
func appendDigits(dst []byte, v uint64) []byte {
	var digits [10]byte
	d := strconv.AppendUint(digits[:0], v, 10)
	for range 10 - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

func decodeRecord(k presence.Key, v string) (presence.Consumer, bool) {
	f := strings.Fields(v)
	if len(f) == 4 {
		f = append(f, "0") // a record written before TTLs: none declared
	}
	if len(f) != 5 {
		return presence.Consumer{}, false
	}
	ttl, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil {
		return presence.Consumer{}, false
	}
	reg, ok1 := decodeTime(f[0])
	hb, ok2 := decodeTime(f[1])
	act, ok3 := decodeTime(f[2])
	leases, err := strconv.ParseUint(f[3], 10, 32)
	if !ok1 || !ok2 || !ok3 || err != nil {
		return presence.Consumer{}, false
	}
	c := presence.Consumer{
		Key:           k,
		RegisteredAt:  time.Unix(0, reg).UTC(),
		LastHeartbeat: time.Unix(0, hb).UTC(),
		Leases:        uint32(leases),
		TTL:           time.Duration(ttl) * time.Millisecond,
	}
	if act != math.MinInt64 {
		c.LastActive = time.Unix(0, act).UTC()
	}
	return c, true
}
