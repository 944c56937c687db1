package presence

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"time"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Checkpoint format, version 2
//
//	header  "PRESENCE" | version (1 byte) | 3 zero bytes
//	blocks  length (u32 LE, 1..maxBlock) | CRC-32C of the payload (u32 LE) | payload
//	trailer 0 (u32) | record count (u64 LE) | CRC-32C of those 8 bytes (u32 LE)
//
// A payload is a run of records, each:
//
//	uvarint len | queue | uvarint len | group | uvarint len | consumer |
//	varint registered | varint last heartbeat | varint last active | uvarint leases |
//	uvarint declared TTL
//
// with times in Unix nanoseconds, last active = math.MinInt64 for none, and
// the declared TTL in nanoseconds, 0 for none (at most math.MaxInt64).
// Version 1, written before consumers could declare a TTL, is the same
// without the declared TTL; ReadFrom still reads it, as declaring none.
// Every block is checked before anything is applied, and the trailer's count
// must match, so a truncated or corrupted checkpoint is detected whole.

const (
	checkpointMagic   = "PRESENCE"
	checkpointVersion = 2
	// checkpointV1 is the previous version, read but no longer written:
	// its records carry no declared TTL.
	checkpointV1 = 1
	// blockTarget is the payload size at which WriteTo starts a new block.
	blockTarget = 64 << 10
	// maxBlock bounds a block's payload, so that a corrupt length cannot
	// make ReadFrom allocate without limit. A record larger than
	// blockTarget gets a block of its own, so maxBlock also bounds the key
	// size a checkpoint can carry.
	maxBlock = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadCheckpoint is wrapped by every error ReadFrom returns for input that
// is not a complete, intact checkpoint.
var ErrBadCheckpoint = errors.New("presence: bad checkpoint")

func badCheckpoint(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadCheckpoint, fmt.Sprintf(format, args...))
}

// countingWriter counts what reaches the underlying writer.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo writes a checkpoint of every consumer to w and returns the number
// of bytes written. It implements io.WriterTo.
//
// It streams: it reads the consumers in no particular order, encoding
// into one block buffer of about 64 KiB, and never holds a copy of the
// registry. Heartbeats keep flowing meanwhile; the checkpoint is weakly
// consistent in the same way a snapshot is.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	hdr := append([]byte(checkpointMagic), checkpointVersion, 0, 0, 0)
	if _, err := bw.Write(hdr); err != nil {
		return cw.n, err
	}
	block := make([]byte, 0, blockTarget+1024)
	var records uint64
	var err error
	flush := func() {
		if len(block) == 0 || err != nil {
			return
		}
		var h [8]byte
		binary.LittleEndian.PutUint32(h[0:], uint32(len(block)))
		binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(block, castagnoli))
		if _, err = bw.Write(h[:]); err == nil {
			_, err = bw.Write(block)
		}
		block = block[:0]
	}
	r.walk(func(ms []*entry.Entry) bool {
		for _, e := range ms {
			st, ok := e.Load()
			if !ok {
				continue
			}
			block = appendRecord(block, entryKey(e), st.Registered, st.HB, st.Active, st.Leases, int64(st.TTL))
			records++
			if len(block) >= blockTarget {
				if flush(); err != nil {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return cw.n, err
	}
	flush()
	if err != nil {
		return cw.n, err
	}
	var t [16]byte
	binary.LittleEndian.PutUint64(t[4:], records)
	binary.LittleEndian.PutUint32(t[12:], crc32.Checksum(t[4:12], castagnoli))
	if _, err := bw.Write(t[:]); err != nil {
		return cw.n, err
	}
	err = bw.Flush()
	return cw.n, err
}

func appendRecord(b []byte, k Key, registered, hb, active int64, leases uint32, ttl int64) []byte {
	for _, s := range [...]string{k.Queue, k.Group, k.Consumer} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, registered)
	b = binary.AppendVarint(b, hb)
	b = binary.AppendVarint(b, active)
	b = binary.AppendUvarint(b, uint64(leases))
	return binary.AppendUvarint(b, uint64(ttl))
}

// record is one decoded checkpoint row.
type record struct {
	k                      Key
	registered, hb, active int64
	ttl                    int64 // declared, nanoseconds; 0 for none
	leases                 uint32
}

// decodeRecord decodes one record of checkpoint format version from the
// front of b.
func decodeRecord(b []byte, version byte) (record, []byte, error) {
	var rec record
	var strs [3]string
	for i := range strs {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return rec, nil, badCheckpoint("record key truncated")
		}
		strs[i] = string(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	rec.k = Key{Queue: strs[0], Group: strs[1], Consumer: strs[2]}
	for _, p := range []*int64{&rec.registered, &rec.hb, &rec.active} {
		v, w := binary.Varint(b)
		if w <= 0 {
			return rec, nil, badCheckpoint("record time truncated")
		}
		*p = v
		b = b[w:]
	}
	l, w := binary.Uvarint(b)
	if w <= 0 || l > 1<<32-1 {
		return rec, nil, badCheckpoint("record lease count invalid")
	}
	rec.leases = uint32(l)
	b = b[w:]
	if version != checkpointV1 {
		d, w := binary.Uvarint(b)
		if w <= 0 || d > math.MaxInt64 {
			return rec, nil, badCheckpoint("record TTL invalid")
		}
		rec.ttl = int64(d)
		b = b[w:]
	}
	if err := rec.validate(); err != nil {
		return rec, nil, err
	}
	return rec, b, nil
}

// validate checks that rec's times are storable and in order: registered
// and last active (if any) no later than the last heartbeat.
func (rec record) validate() error {
	if rec.hb == nanotime.None || rec.registered == nanotime.None {
		return badCheckpoint("record time out of range")
	}
	if rec.registered > rec.hb || rec.active != nanotime.None && rec.active > rec.hb {
		return badCheckpoint("record times out of order")
	}
	return nil
}

// minChunk is the first step in which a block's payload buffer grows as its
// bytes arrive; see blockReader.payload.
const minChunk = 64 << 10

// blockReader reads a checkpoint's header, blocks and trailer from rd,
// counting the bytes it reads.
type blockReader struct {
	rd      io.Reader
	n       int64
	buf     []byte // the current block's payload, reused
	version byte   // the header's format version
}

// read fills p, turning an early end of input into ErrBadCheckpoint.
func (br *blockReader) read(p []byte) error {
	m, err := io.ReadFull(br.rd, p)
	br.n += int64(m)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badCheckpoint("truncated after %d bytes", br.n)
	}
	return err
}

func (br *blockReader) header() error {
	var hdr [12]byte
	if err := br.read(hdr[:]); err != nil {
		return err
	}
	if string(hdr[:8]) != checkpointMagic {
		return badCheckpoint("not a presence checkpoint")
	}
	br.version = hdr[8]
	if br.version != checkpointVersion && br.version != checkpointV1 || hdr[9]|hdr[10]|hdr[11] != 0 {
		return badCheckpoint("unsupported version %d", hdr[8])
	}
	return nil
}

// block reads the next block and returns its checked payload and checksum,
// or, at the trailer, checks it against records and returns a nil payload.
func (br *blockReader) block(records uint64) (payload []byte, sum uint32, err error) {
	var h [8]byte
	if err := br.read(h[:4]); err != nil {
		return nil, 0, err
	}
	size := binary.LittleEndian.Uint32(h[:4])
	if size == 0 {
		return nil, 0, br.trailer(records)
	}
	if size > maxBlock {
		return nil, 0, badCheckpoint("block of %d bytes exceeds the limit", size)
	}
	if err := br.read(h[4:]); err != nil {
		return nil, 0, err
	}
	if err := br.payload(int(size)); err != nil {
		return nil, 0, err
	}
	sum = binary.LittleEndian.Uint32(h[4:])
	if crc32.Checksum(br.buf, castagnoli) != sum {
		return nil, 0, badCheckpoint("block checksum mismatch at byte %d", br.n-int64(size))
	}
	return br.buf, sum, nil
}

// payload reads size bytes into br.buf. The buffer grows as the bytes
// arrive, doubling from minChunk, so that a length that claims more than
// the input holds costs at most about twice what the input does, never
// maxBlock up front.
func (br *blockReader) payload(size int) error {
	br.buf = br.buf[:0]
	for len(br.buf) < size {
		chunk := min(size-len(br.buf), max(len(br.buf), minChunk))
		start := len(br.buf)
		br.buf = slices.Grow(br.buf, chunk)[:start+chunk]
		if err := br.read(br.buf[start:]); err != nil {
			return err
		}
	}
	return nil
}

func (br *blockReader) trailer(records uint64) error {
	var t [12]byte
	if err := br.read(t[:]); err != nil {
		return err
	}
	if crc32.Checksum(t[:8], castagnoli) != binary.LittleEndian.Uint32(t[8:]) {
		return badCheckpoint("trailer checksum mismatch")
	}
	if want := binary.LittleEndian.Uint64(t[:8]); want != records {
		return badCheckpoint("trailer counts %d records, blocks hold %d", want, records)
	}
	return nil
}

// readBlocks reads a whole checkpoint from rd, checking every block, and
// calls apply for each record when apply is not nil. It returns the bytes
// read and the record count.
//
// sums holds the blocks' checksums: a pass without apply (verification)
// appends them; a pass with apply requires each block's checksum to match
// the one verified at its place before it applies any of its records, so
// that it applies only what was verified even if rd changed in between.
func readBlocks(rd io.Reader, apply func(record) error, sums *[]uint32) (int64, uint64, error) {
	br := &blockReader{rd: rd}
	if err := br.header(); err != nil {
		return br.n, 0, err
	}
	var records uint64
	for i := 0; ; i++ {
		payload, sum, err := br.block(records)
		if err != nil || payload == nil {
			return br.n, records, err
		}
		switch {
		case apply == nil:
			*sums = append(*sums, sum)
		case i >= len(*sums) || (*sums)[i] != sum:
			return br.n, records, badCheckpoint("input changed after it was verified, at block %d", i)
		}
		for b := payload; len(b) > 0; records++ {
			rec, rest, err := decodeRecord(b, br.version)
			if err != nil {
				return br.n, records, err
			}
			if apply != nil {
				if err := apply(rec); err != nil {
					return br.n, records, err
				}
			}
			b = rest
		}
	}
}

// ReadFrom merges a checkpoint read from rd into the registry and returns
// the number of bytes read. It implements io.ReaderFrom.
//
// Merging never moves a consumer backwards: for a consumer already present
// it keeps the later LastHeartbeat (with its lease count) and LastActive and
// the earlier RegisteredAt; a consumer that is absent is registered with the
// checkpoint's times, and a Joined event is emitted for it.
//
// The checkpoint is verified whole before anything is applied. If rd is an
// io.Seeker it is read twice, both times streaming: once to verify, then,
// rewound, to apply. Otherwise the verified input is held in memory while it
// is applied. A truncated or corrupt checkpoint returns an error wrapping
// ErrBadCheckpoint and leaves the registry unchanged. The one exception is
// an io.Seeker whose content changes between the two passes (a file written
// in place while it is read; Checkpointer.Save never does that): the apply
// pass checks each block against the verified one before applying it, and
// stops at the first that differs with an error wrapping ErrBadCheckpoint,
// so only verified records are merged, but those of the blocks before it
// are. Limits still apply:
// consumers that WithMaxConsumers or WithMaxConsumersPerGroup refuse are
// skipped, and the error then wraps that limit's error.
//
// ReadFrom has no clock, so it restores times from a clock that was ahead as
// they are; ReadFromAt refuses them.
func (r *Registry) ReadFrom(rd io.Reader) (int64, error) {
	return r.readFrom(rd, nanotime.Max)
}

// ReadFromAt is ReadFrom for a reader whose clock reads now: the records
// whose LastHeartbeat is more than the clock step (WithMaxClockStep) after
// now, times that the reader's clock proves wrong, are skipped and counted
// in Counters.ClockSteps, and the error then wraps ErrFutureTime. The other
// records are merged as ReadFrom merges them. A zero now is refused with
// ErrZeroTime, reading nothing.
func (r *Registry) ReadFromAt(rd io.Reader, now time.Time) (int64, error) {
	if now.IsZero() {
		return 0, ErrZeroTime
	}
	return r.readFrom(rd, nanotime.FromTime(now))
}

func (r *Registry) readFrom(rd io.Reader, now int64) (int64, error) {
	r.mustBeMade()
	var sums []uint32
	if s, ok := rd.(io.ReadSeeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err == nil {
			n, _, err := readBlocks(s, nil, &sums)
			if err != nil {
				return n, err
			}
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return n, err
			}
			return r.apply(s, sums, now)
		}
	}
	var kept bytes.Buffer
	if n, _, err := readBlocks(io.TeeReader(rd, &kept), nil, &sums); err != nil {
		return n, err
	}
	return r.apply(&kept, sums, now)
}

// apply merges a checkpoint whose blocks were verified with checksums sums,
// refusing heartbeats after now by more than the clock step.
func (r *Registry) apply(rd io.Reader, sums []uint32, now int64) (int64, error) {
	var refused, firstErr error
	var skipped int
	n, _, err := readBlocks(rd, func(rec record) error {
		if err := r.restore(rec, now); err != nil {
			skipped++
			if refused == nil {
				refused = err
			}
		}
		return nil
	}, &sums)
	if err != nil {
		firstErr = err
	} else if refused != nil {
		firstErr = fmt.Errorf("presence: %d consumers not restored: %w", skipped, refused)
	}
	return n, firstErr
}

// restore merges one record, unless its heartbeat is ahead of now by more
// than the clock step.
func (r *Registry) restore(rec record, now int64) error {
	if rec.k.tooLong() {
		return ErrKeyTooLong
	}
	if r.ahead(rec.hb, now) {
		r.clockSteps.Add(1)
		return fmt.Errorf("%w: %q last beat at %v", ErrFutureTime, rec.k, nanotime.ToTime(rec.hb))
	}
	k := rec.k
	ttl := r.declare(time.Duration(rec.ttl))
	merge := func(e *entry.Entry) bool { return e.MergeTTL(rec.registered, rec.hb, rec.active, rec.leases, ttl) }
	sl, ok := r.lookup(&k)
	if ok && merge(sl.e) {
		return nil
	}
	fresh := entry.RestoreTTL(k.Queue, k.Group, k.Consumer, rec.registered, rec.hb, rec.active, rec.leases, ttl)
	_, err := r.upsert(sl.s, mkey{h: sl.h, k: entryKey(fresh)}, fresh, rec.hb, false, merge)
	return err
}
