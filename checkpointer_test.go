package presence_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed351623e9/presence"
)

var marker = key("marker", "marker", "generation")

func TestCheckpointerSaveAndLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presence.ckpt")
	r := presence.New()
	populate(t, r)
	cp := &presence.Checkpointer{Registry: r, Path: path}
	require.NoError(t, cp.Save())
	require.NoError(t, cp.Save(), "saving over an existing checkpoint")

	r2 := presence.New()
	require.NoError(t, (&presence.Checkpointer{Registry: r2, Path: path}).Load())
	assert.Equal(t, r.Snapshot(t0, ttl), r2.Snapshot(t0, ttl))

	// A first start has nothing to load.
	require.NoError(t, (&presence.Checkpointer{Registry: presence.New(), Path: path + ".absent"}).Load())
	// A damaged file is reported and the registry left alone.
	require.NoError(t, os.WriteFile(path, []byte("PRESENCE\x01\x00\x00\x00garbage"), 0o600))
	r3 := presence.New()
	assert.ErrorIs(t, (&presence.Checkpointer{Registry: r3, Path: path}).Load(), presence.ErrBadCheckpoint)
	assert.Zero(t, r3.Len())

	assert.ErrorIs(t, (&presence.Checkpointer{}).Save(), presence.ErrNoPath)
	assert.ErrorIs(t, (&presence.Checkpointer{Registry: r}).Load(), presence.ErrNoPath)
	assert.Error(t, (&presence.Checkpointer{Registry: r, Path: filepath.Join(path, "not-a-dir", "x")}).Save())
}

func TestCheckpointerRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "presence.ckpt")
	r := presence.New()
	ticks := make(chan time.Time)
	cp := &presence.Checkpointer{Registry: r, Path: path, Ticks: ticks}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()

	beat(t, r, marker, 1, t0)
	ticks <- time.Time{}
	ticks <- time.Time{} // returns once the first save is over
	beat(t, r, marker, 2, t0.Add(time.Second))
	cancel() // Run saves once more on the way out
	require.ErrorIs(t, <-done, context.Canceled)

	r2 := presence.New()
	require.NoError(t, (&presence.Checkpointer{Registry: r2, Path: path}).Load())
	c, ok := r2.Lookup(marker, t0, ttl)
	require.True(t, ok)
	assert.EqualValues(t, 2, c.Leases, "the final save has the last state")
}

// The child side of TestCheckpointSurvivesKill: it saves checkpoints of a
// large registry back to back, announcing each, until it is killed.
func TestCheckpointChild(t *testing.T) {
	dir := os.Getenv("PRESENCE_CHECKPOINT_CHILD")
	if dir == "" {
		t.Skip("run by TestCheckpointSurvivesKill")
	}
	r := presence.New()
	for i := 0; i < 100000; i++ {
		_ = r.Heartbeat(key("queue", fmt.Sprint("group-", i%100), fmt.Sprint("consumer-", i)), 1, t0)
	}
	cp := &presence.Checkpointer{Registry: r, Path: filepath.Join(dir, "presence.ckpt")}
	for gen := 1; ; gen++ {
		_ = r.Heartbeat(marker, uint32(gen), t0.Add(time.Duration(gen)))
		fmt.Printf("writing %d\n", gen)
		if err := cp.Save(); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("saved %d\n", gen)
	}
}

// A process killed with SIGKILL while it writes a checkpoint leaves the
// previous checkpoint or the new one, complete, never a torn file.
func TestCheckpointSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for round := 0; round < 6; round++ {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PRESENCE_CHECKPOINT_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(out)
		killAt := 1 + round%3 // kill while writing generation killAt+1, or just after announcing it
		writing := 0
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if len(f) == 2 && f[0] == "writing" {
				writing, _ = strconv.Atoi(f[1])
				if writing > killAt {
					break
				}
			}
			if len(f) > 0 && f[0] == "error" {
				t.Fatal(lines.Text())
			}
		}
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		require.Greater(t, writing, killAt, "the child stopped early")

		r := presence.New()
		cp := &presence.Checkpointer{Registry: r, Path: filepath.Join(dir, "presence.ckpt")}
		require.NoError(t, cp.Load(), "round %d: the checkpoint on disk must be whole", round)
		c, ok := r.Lookup(marker, t0, ttl)
		require.True(t, ok)
		gen := int(c.Leases)
		assert.Contains(t, []int{writing - 1, writing}, gen, "round %d: generation %d on disk, was writing %d", round, gen, writing)
		assert.Equal(t, 100001, r.Len())
		left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
		assert.Empty(t, left, "Load removes the interrupted save's temporary file")
	}
}
