package presence_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// A block header that claims 64 MiB costs about what the input holds, not
// 64 MiB: the payload buffer grows as the bytes arrive.
func TestBlockLengthDoesNotAllocateUpFront(t *testing.T) {
	in := []byte("PRESENCE\x01\x00\x00\x00")
	in = binary.LittleEndian.AppendUint32(in, 64<<20) // the largest block allowed
	in = append(in, 1, 2, 3, 4, 5, 6, 7, 8)           // its checksum and 4 bytes of payload
	for _, seekable := range []bool{true, false} {
		var rd io.Reader = bytes.NewReader(in)
		if !seekable {
			rd = onlyReader{rd}
		}
		r := presence.New()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := r.ReadFrom(rd)
		runtime.ReadMemStats(&after)
		require.ErrorIs(t, err, presence.ErrBadCheckpoint)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "seekable=%v: bytes allocated for a %d-byte input", seekable, len(in))
	}
}

// changingReader serves one checkpoint until it is rewound to the start,
// and another after that: a file rewritten in place between ReadFrom's two
// passes.
type changingReader struct {
	*bytes.Reader
	next []byte
}

func (c *changingReader) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart && off == 0 && c.next != nil {
		c.Reader, c.next = bytes.NewReader(c.next), nil
	}
	return c.Reader.Seek(off, whence)
}

// If a seekable input changes between verification and apply, ReadFrom
// merges no record that it did not verify, and says so.
func TestReadFromAppliesOnlyVerifiedBlocks(t *testing.T) {
	src := presence.New()
	for i := range 3000 { // more than one 64 KiB block
		beat(t, src, key(fmt.Sprintf("queue-%040d", i), "g", "c"), 1, t0)
	}
	var buf bytes.Buffer
	_, err := src.WriteTo(&buf)
	require.NoError(t, err)
	orig := buf.Bytes()

	// The same checkpoint with the first queue name of block 2 changed, and
	// the block's checksum recomputed: a valid checkpoint, but not the one
	// that was verified.
	changed := bytes.Clone(orig)
	b2 := 12 + 8 + int(binary.LittleEndian.Uint32(changed[12:]))
	size2 := int(binary.LittleEndian.Uint32(changed[b2:]))
	require.NotZero(t, size2, "the checkpoint needs a second block")
	payload := changed[b2+8 : b2+8+size2]
	require.Equal(t, byte('q'), payload[1])
	payload[1] = 'Q'
	binary.LittleEndian.PutUint32(changed[b2+4:], crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	_, err = presence.New().ReadFrom(bytes.NewReader(changed))
	require.NoError(t, err, "the changed checkpoint is itself valid")

	r := presence.New()
	_, err = r.ReadFrom(&changingReader{Reader: bytes.NewReader(orig), next: changed})
	require.ErrorIs(t, err, presence.ErrBadCheckpoint)
	for _, c := range r.Snapshot(t0, ttl) {
		if c.Queue[0] != 'q' {
			t.Fatalf("merged %q, a record that was never verified", c.Key)
		}
	}
	assert.Less(t, r.Len(), src.Len(), "the blocks after the change are not applied")
	assert.False(t, errors.Is(err, io.EOF))
}
