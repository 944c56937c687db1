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

// Key layout. Groups are spread over Buckets buckets; bucket b lives in one
// Redis Cluster slot, slot(b), through a hash tag that every key of the
// bucket carries:
//
//	PREFIX:{T}:d     hash: the bucket's directory and loss marker
//	                   "epoch" -> a random token, made when the hash is made
//	                   "seq"   -> a counter that every merge increments
//	                   MEMBER  -> "1" for every group of the bucket
//	PREFIX:{T}:G:h   hash: consumer -> "registered heartbeat active leases"
//	PREFIX:{T}:G:z   sorted set: consumer scored by heartbeat, in ms
//
// T is the bucket's tag, G the hex xxhash of the group's MEMBER string,
// len(queue) ":" queue group, and a group's bucket is that hash modulo
// Buckets. Directory fields that are not members never contain ':', so they
// cannot collide with a MEMBER.
//
// So one script call updates a group and its bucket's directory atomically,
// in one slot; the directory is Buckets keys on as many slots rather than
// one hot key; and a read of everything is one command per bucket, sent to
// each master in one pipeline.

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

// group names one (queue, group) in Redis.
type group struct {
	member string // len(queue) ":" queue group: its field in the directory
	bucket int
	h, z   string
}

func (m *Mirror) groupOf(q, g string) group {
	member := memberOf(q, g)
	sum := xxhash.Sum64String(member)
	b := int(sum % Buckets)
	base := m.bucketBase[b] + strconv.FormatUint(sum, 16)
	return group{member: member, bucket: b, h: base + ":h", z: base + ":z"}
}

func memberOf(q, g string) string { return strconv.Itoa(len(q)) + ":" + q + g }

// bucketOf returns the bucket of group (q, g).
func bucketOf(q, g string) int { return int(xxhash.Sum64String(memberOf(q, g)) % Buckets) }

// dirKey returns the directory key of bucket b.
func (m *Mirror) dirKey(b int) string { return m.bucketBase[b] + "d" }

func bucketBases(prefix string) (out [Buckets]string) {
	tags := bucketTags()
	for b := range out {
		out[b] = prefix + ":{" + tags[b] + "}:"
	}
	return out
}

func parseMember(member string) (presence.GroupKey, bool) {
	i := strings.IndexByte(member, ':')
	if i <= 0 {
		return presence.GroupKey{}, false
	}
	n, err := strconv.Atoi(member[:i])
	rest := member[i+1:]
	if err != nil || n < 0 || n > len(rest) {
		return presence.GroupKey{}, false
	}
	return presence.GroupKey{Queue: rest[:n], Group: rest[n:]}, true
}

// encodeTime writes ns as a 20-digit offset-binary decimal: string order is
// time order, and math.MinInt64 (no active time) is all zeros.
func encodeTime(ns int64) string {
	s := strconv.FormatUint(uint64(ns)^(1<<63), 10)
	return strings.Repeat("0", 20-len(s)) + s
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

// score is a heartbeat in milliseconds, exact in a float64 for any date.
func score(ns int64) float64 { return float64(ns / 1e6) }

func decodeRecord(k presence.Key, v string) (presence.Consumer, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
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
	}
	if act != math.MinInt64 {
		c.LastActive = time.Unix(0, act).UTC()
	}
	return c, true
}
