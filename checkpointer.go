package presence

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Checkpointer keeps a checkpoint file of a registry, so that presence
// survives a restart with its real last heartbeats and registration times.
// Load it at start, then Run it; configure its fields first and do not
// change them while it runs.
type Checkpointer struct {
	// Registry is the registry to save and restore. Required.
	Registry *Registry
	// Path is the checkpoint file. Required. Saves write a temporary file
	// next to it and rename it into place.
	Path string
	// Interval is the time between saves in Run; zero or negative means
	// 10 seconds.
	Interval time.Duration
	// Logger, if set, receives a line for each failed save in Run.
	Logger *slog.Logger
	// Ticks, if set, replaces Run's ticker; tests drive saves with it.
	// Closing it ends Run after a final save, whose error Run returns.
	Ticks <-chan time.Time
	// Now is the clock Load checks restored heartbeats against (see
	// Registry.ReadFromAt); nil means time.Now.
	Now func() time.Time
}

// ErrNoPath is returned by a Checkpointer without a Registry or a Path.
var ErrNoPath = errors.New("presence: checkpointer needs a registry and a path")

const tmpInfix = ".tmp-"

// Load merges the checkpoint file into the registry (see Registry.ReadFromAt:
// heartbeats ahead of Now by more than the clock step are not restored).
// A missing file is not an error: there is nothing to restore on a first
// start. Load also removes temporary files left by a save that was
// interrupted by a crash.
func (c *Checkpointer) Load() error {
	if c.Registry == nil || c.Path == "" {
		return ErrNoPath
	}
	c.removeTemps()
	f, err := os.Open(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	_, err = c.Registry.ReadFromAt(f, now()) // *os.File seeks: verified, then applied, streaming
	return err
}

// removeTemps removes the temporary files of saves that did not finish:
// the files of Path's directory whose names start with Path's base name and
// tmpInfix. It compares names as strings, so that no character of Path is
// read as a pattern. Failures are ignored: a stale temporary file only takes
// space.
func (c *Checkpointer) removeTemps() {
	dir, base := filepath.Split(c.Path)
	if dir == "" {
		dir = "."
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, d := range names {
		if strings.HasPrefix(d.Name(), base+tmpInfix) && !d.IsDir() {
			_ = os.Remove(filepath.Join(dir, d.Name()))
		}
	}
}

// Save writes a checkpoint atomically: to a temporary file in the same
// directory, fsynced, renamed over Path, and the directory fsynced. A crash
// at any point leaves either the previous checkpoint or the new one, never
// a mix.
func (c *Checkpointer) Save() (err error) {
	if c.Registry == nil || c.Path == "" {
		return ErrNoPath
	}
	dir, base := filepath.Split(c.Path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+tmpInfix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = c.Registry.WriteTo(f); err != nil { // WriteTo buffers its own writes
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, c.Path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !dirSyncUnsupported(err) {
		return err
	}
	return nil
}

// dirSyncUnsupported reports whether err, from fsyncing a directory, says
// only that the filesystem cannot fsync directories (EINVAL, as some
// network and FUSE filesystems answer): the rename is done, so that is not
// a failed save. Any other error is.
func dirSyncUnsupported(err error) bool { return errors.Is(err, syscall.EINVAL) }

// Run saves every Interval until ctx is done, then saves once more and
// returns ctx's error, joined with the final save's error if it failed; if
// Ticks is closed first, it saves once more and returns that save's error. A
// failed periodic save is logged and retried at the next tick. Run starts no
// goroutine.
func (c *Checkpointer) Run(ctx context.Context) error {
	if c.Registry == nil || c.Path == "" {
		return ErrNoPath
	}
	every := c.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	ticks, stop := tickerOr(c.Ticks, every)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), c.Save())
		case _, ok := <-ticks:
			if !ok {
				return c.Save() // Ticks was closed: the end, as for ctx
			}
			if err := c.Save(); err != nil && c.Logger != nil {
				c.Logger.Error("presence: checkpoint save failed", "path", c.Path, "err", err)
			}
		}
	}
}
