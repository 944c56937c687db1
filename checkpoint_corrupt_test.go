package presence_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// These tests build checkpoints by hand, following the format described in
// checkpoint.go, so that each one damages exactly one thing and leaves every
// other check satisfied: a record that is wrong inside a block whose CRC is
// right, or a block whose CRC alone is wrong.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawRecord is one checkpoint record as it is encoded, with the lease count
// wide enough to hold values the format must refuse.
type rawRecord struct {
	q, g, c                string
	registered, hb, active int64
	leases                 uint64
}

func (r rawRecord) encode() []byte {
	var b []byte
	for _, s := range []string{r.q, r.g, r.c} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, r.registered)
	b = binary.AppendVarint(b, r.hb)
	b = binary.AppendVarint(b, r.active)
	return binary.AppendUvarint(b, r.leases)
}

// encodeV2 encodes r in format version 2, which ends a record with the
// consumer's declared TTL in nanoseconds.
func (r rawRecord) encodeV2(ttl uint64) []byte {
	return binary.AppendUvarint(r.encode(), ttl)
}

// goodRecord is a valid record, times in Unix nanoseconds around t0: an
// idle consumer that last had work just before its last heartbeat.
func goodRecord(c string) rawRecord {
	ns := t0.UnixNano()
	return rawRecord{q: "q", g: "g", c: c, registered: ns, hb: ns + 2, active: ns + 1}
}

// rawCheckpoint frames payloads as blocks of a format version 1
// checkpoint, each with its correct CRC, and ends with a trailer counting
// records.
func rawCheckpoint(records uint64, payloads ...[]byte) []byte {
	return rawCheckpointVersion(1, records, payloads...)
}

// rawCheckpointVersion is rawCheckpoint in format version v.
func rawCheckpointVersion(v byte, records uint64, payloads ...[]byte) []byte {
	b := append([]byte("PRESENCE"), v, 0, 0, 0)
	for _, p := range payloads {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(p, castagnoli))
		b = append(b, p...)
	}
	var cnt [8]byte
	binary.LittleEndian.PutUint64(cnt[:], records)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, cnt[:]...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(cnt[:], castagnoli))
}

// readFromBoth runs ReadFrom on data through its seeking and its streaming
// path, each into a fresh registry holding one consumer, and calls check
// with the error and whether the registry is unchanged. A panic fails the
// test instead of ending it.
func readFromBoth(t *testing.T, name string, data []byte, check func(err error, unchanged bool, r *presence.Registry)) {
	t.Helper()
	for _, seekable := range []bool{true, false} {
		r := presence.New()
		beat(t, r, key("q", "g", "present"), 4, t0.Add(time.Hour))
		before := r.Snapshot(t0, ttl)
		var in io.Reader = bytes.NewReader(data)
		if !seekable {
			in = onlyReader{in}
		}
		var err error
		if !assert.NotPanics(t, func() { _, err = r.ReadFrom(in) }, "%s (seekable=%v)", name, seekable) {
			continue
		}
		check(err, assert.ObjectsAreEqual(before, r.Snapshot(t0, ttl)), r)
	}
}

// The hand-built checkpoints are right: a valid one is accepted whole.
func TestRawCheckpointIsAccepted(t *testing.T) {
	data := rawCheckpoint(2, append(goodRecord("a").encode(), goodRecord("b").encode()...))
	readFromBoth(t, "valid", data, func(err error, _ bool, r *presence.Registry) {
		require.NoError(t, err)
		c, ok := r.Lookup(key("q", "g", "b"), t0, ttl)
		require.True(t, ok)
		assert.Equal(t, t0.Add(2), c.LastHeartbeat)
		assert.Equal(t, t0.Add(1), c.LastActive)
		assert.Equal(t, t0, c.RegisteredAt)
		assert.Zero(t, c.Leases)
		assert.Equal(t, 3, r.Len())
	})
}

// A bit flip inside a key byte leaves a record that decodes and validates,
// with another consumer's name: only the block's CRC can tell.
func TestCheckpointCRCCatchesKeyBitFlip(t *testing.T) {
	src := presence.New()
	beat(t, src, key("queue", "group", "consumer"), 1, t0)
	data := checkpoint(t, src)
	at := bytes.Index(data, []byte("consumer"))
	require.Positive(t, at)
	flipped := bytes.Clone(data)
	flipped[at] ^= 0x01 // "consumer" becomes "bonsumer"

	readFromBoth(t, "key bit flip", flipped, func(err error, unchanged bool, _ *presence.Registry) {
		assert.ErrorIs(t, err, presence.ErrBadCheckpoint)
		// The message names where the damaged block's payload starts:
		// after the 12-byte header and the block's 8-byte frame.
		assert.ErrorContains(t, err, "block checksum mismatch at byte 20")
		assert.True(t, unchanged, "a checkpoint with a bad CRC changed the registry")
	})

	// The same damage with the CRC recomputed is a valid checkpoint: the
	// CRC was the only check standing between the flip and the registry.
	const hdr, frame = 12, 8
	binary.LittleEndian.PutUint32(flipped[hdr+4:], crc32.Checksum(flipped[hdr+frame:len(flipped)-16], castagnoli))
	readFromBoth(t, "recomputed CRC", flipped, func(err error, _ bool, r *presence.Registry) {
		require.NoError(t, err)
		_, ok := r.Lookup(key("queue", "group", "bonsumer"), t0, ttl)
		assert.True(t, ok)
	})
}

// Records that are malformed inside a block whose CRC is right are refused
// with ErrBadCheckpoint, without a panic, and nothing of the checkpoint is
// applied, not even the valid record before the bad one.
func TestMalformedRecordsWithValidCRC(t *testing.T) {
	good := goodRecord("first").encode()
	withRecord := func(mod func(*rawRecord)) []byte {
		r := goodRecord("second")
		mod(&r)
		return r.encode()
	}
	strings3 := func() []byte { // a record's three strings, nothing after them
		var b []byte
		for _, s := range []string{"q", "g", "second"} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		return b
	}
	noLeases := withRecord(func(*rawRecord) {})
	noLeases = noLeases[:len(noLeases)-1] // the lease count 0 is one byte
	cases := map[string][]byte{
		"string length past the payload": append(binary.AppendUvarint(nil, 1<<20), "abc"...),
		"string length of 2^64-1":        append(binary.AppendUvarint(nil, math.MaxUint64), "abc"...),
		"string length one past the end": append(binary.AppendUvarint(nil, 4), "abc"...),
		"string length cut short":        {0x80},
		"string length over 64 bits":     append(bytes.Repeat([]byte{0xff}, 10), 0x7f),
		"times missing":                  strings3(),
		"time cut short":                 append(strings3(), 0x80),
		"time over 64 bits":              append(strings3(), append(bytes.Repeat([]byte{0xff}, 10), 0x7f)...),
		"lease count missing":            noLeases,
		"lease count 2^32":               withRecord(func(r *rawRecord) { r.leases = 1 << 32 }),
		"lease count 2^64-1":             withRecord(func(r *rawRecord) { r.leases = math.MaxUint64 }),
		"LastActive after LastHeartbeat": withRecord(func(r *rawRecord) { r.active = r.hb + 1 }),
		"RegisteredAt after heartbeat":   withRecord(func(r *rawRecord) { r.registered = r.hb + 1 }),
		"heartbeat is no time":           withRecord(func(r *rawRecord) { r.hb, r.registered, r.active = math.MinInt64, math.MinInt64, math.MinInt64 }),
		"registration is no time":        withRecord(func(r *rawRecord) { r.registered = math.MinInt64 }),
	}
	for name, bad := range cases {
		data := rawCheckpoint(2, append(bytes.Clone(good), bad...))
		readFromBoth(t, name, data, func(err error, unchanged bool, _ *presence.Registry) {
			assert.ErrorIs(t, err, presence.ErrBadCheckpoint, name)
			assert.True(t, unchanged, "%s: the registry changed", name)
		})
	}
}

// In format version 2 a record ends with the consumer's declared TTL. A
// record without it, even the last of its block, is refused, as is a TTL
// beyond the largest Duration; the largest Duration itself is accepted and
// kept as MaxDeclaredTTL, as a longer declaration is.
func TestRecordTTLField(t *testing.T) {
	good := goodRecord("first").encodeV2(0)
	second := goodRecord("second")
	cases := map[string][]byte{
		"TTL missing":   second.encode(),
		"TTL cut short": append(second.encode(), 0x80),
		"TTL of 2^63":   second.encodeV2(1 << 63),
		"TTL of 2^64-1": second.encodeV2(math.MaxUint64),
	}
	for name, bad := range cases {
		data := rawCheckpointVersion(2, 2, append(bytes.Clone(good), bad...))
		readFromBoth(t, name, data, func(err error, unchanged bool, _ *presence.Registry) {
			assert.ErrorIs(t, err, presence.ErrBadCheckpoint, name)
			assert.True(t, unchanged, "%s: the registry changed", name)
		})
	}

	data := rawCheckpointVersion(2, 2, append(bytes.Clone(good), second.encodeV2(math.MaxInt64)...))
	readFromBoth(t, "TTL of 2^63-1", data, func(err error, _ bool, r *presence.Registry) {
		require.NoError(t, err)
		c, ok := r.Lookup(key("q", "g", "second"), t0, ttl)
		require.True(t, ok)
		assert.Equal(t, presence.MaxDeclaredTTL, c.TTL)
		c, ok = r.Lookup(key("q", "g", "first"), t0, ttl)
		require.True(t, ok)
		assert.Zero(t, c.TTL)
	})
}

// The edges of what a record may hold are accepted: the largest lease
// count, LastActive and RegisteredAt equal to LastHeartbeat, no LastActive,
// and times at the ends of the range.
func TestRecordEdgesAreAccepted(t *testing.T) {
	cases := map[string]rawRecord{
		"lease count 2^32-1":        {leases: math.MaxUint32, registered: 5, hb: 5, active: 5},
		"no LastActive":             {registered: 1, hb: 2, active: math.MinInt64},
		"earliest time":             {registered: math.MinInt64 + 1, hb: math.MinInt64 + 1, active: math.MinInt64},
		"latest time":               {registered: math.MaxInt64, hb: math.MaxInt64, active: math.MaxInt64},
		"empty strings, idle since": {registered: 1, hb: 9, active: 1},
	}
	for name, rec := range cases {
		if name != "empty strings, idle since" {
			rec.q, rec.g, rec.c = "q", "g", "c"
		}
		data := rawCheckpoint(1, rec.encode())
		readFromBoth(t, name, data, func(err error, _ bool, r *presence.Registry) {
			require.NoError(t, err, name)
			c, ok := r.Lookup(key(rec.q, rec.g, rec.c), t0, ttl)
			require.True(t, ok, name)
			assert.EqualValues(t, rec.leases, c.Leases, name)
			assert.Equal(t, time.Unix(0, rec.hb).UTC(), c.LastHeartbeat, name)
			assert.Equal(t, time.Unix(0, rec.registered).UTC(), c.RegisteredAt, name)
			if rec.active == math.MinInt64 {
				assert.True(t, c.LastActive.IsZero(), name)
			} else {
				assert.Equal(t, time.Unix(0, rec.active).UTC(), c.LastActive, name)
			}
		})
	}
}

// Merge refuses a row whose times are out of order with ErrBadCheckpoint,
// and changes nothing: neither an absent consumer nor a present one.
func TestMergeRefusesRowsOutOfOrder(t *testing.T) {
	present := key("q", "g", "present")
	rows := map[string]presence.Consumer{
		"LastActive after LastHeartbeat": {RegisteredAt: t0, LastHeartbeat: t0.Add(time.Second), LastActive: t0.Add(time.Second + 1), Leases: 1},
		"RegisteredAt after heartbeat":   {RegisteredAt: t0.Add(time.Second + 1), LastHeartbeat: t0.Add(time.Second), Leases: 1},
	}
	for name, row := range rows {
		for _, k := range []presence.Key{present, key("q", "g", "absent")} {
			r := presence.New()
			beat(t, r, present, 4, t0)
			before := r.Snapshot(t0, ttl)
			row.Key = k
			var err error
			require.NotPanics(t, func() { err = r.Merge(row) })
			assert.ErrorIs(t, err, presence.ErrBadCheckpoint, "%s into %q", name, k.Consumer)
			assert.Equal(t, before, r.Snapshot(t0, ttl), "%s into %q changed the registry", name, k.Consumer)
		}
	}

	// Equal times are in order.
	r := presence.New()
	at := t0.Add(time.Second)
	require.NoError(t, r.Merge(presence.Consumer{Key: present, RegisteredAt: at, LastHeartbeat: at, LastActive: at, Leases: 2}))
	c, ok := r.Lookup(present, t0, ttl)
	require.True(t, ok)
	assert.Equal(t, presence.Consumer{Key: present, RegisteredAt: at, LastHeartbeat: at, LastActive: at, Leases: 2}, c)
	assert.Equal(t, 1, r.Len())
}

// blockSizes returns the payload sizes of a checkpoint's blocks.
func blockSizes(t *testing.T, data []byte) []int {
	t.Helper()
	var sizes []int
	for b := data[12:]; ; {
		require.GreaterOrEqual(t, len(b), 4)
		n := int(binary.LittleEndian.Uint32(b))
		if n == 0 {
			return sizes
		}
		sizes = append(sizes, n)
		b = b[8+n:]
	}
}

// WriteTo cuts a block at the record that takes it to 64 KiB or more: every
// block but the last holds at least 64 KiB and less than 64 KiB plus one
// record, so that a checkpoint costs 8 bytes of framing per 64 KiB.
func TestCheckpointBlocksAreFull(t *testing.T) {
	const target = 64 << 10
	src := presence.New()
	for i := 0; i < 6000; i++ {
		beat(t, src, key("queue", "group", fmt.Sprintf("consumer-%05d", i)), uint32(i), t0)
	}
	data := checkpoint(t, src)
	sizes := blockSizes(t, data)
	require.Greater(t, len(sizes), 2)
	total := 0
	for i, n := range sizes {
		total += n
		if i < len(sizes)-1 {
			assert.GreaterOrEqual(t, n, target, "block %d", i)
			assert.Less(t, n, target+64, "block %d", i)
		}
	}
	assert.Equal(t, len(data), 12+8*len(sizes)+total+16)
}
