package presence_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

// Load removes the temporary files of its own interrupted saves, and only
// those, whatever characters its Path holds: glob metacharacters in a name
// are plain characters.
func TestLoadRemovesOnlyItsOwnTemporaryFiles(t *testing.T) {
	for _, name := range []string{"ckpt[12]", "a[b", "c*", "d?", `e\`} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			others := []string{"ckpt1.tmp-1", "ckpt2.tmp-2", "a.tmp-3", "ab.tmp-4", "c.tmp-5", "cx.tmp-6", "dx.tmp-7", name + ".tmpx", "x" + name + ".tmp-8"}
			own := []string{name + ".tmp-9", name + ".tmp-"}
			for _, f := range append(append([]string{}, others...), own...) {
				require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600))
			}
			cp := &presence.Checkpointer{Registry: presence.New(), Path: filepath.Join(dir, name)}
			require.NoError(t, cp.Load())
			for _, f := range others {
				assert.FileExists(t, filepath.Join(dir, f), "Load deleted a file that is not its own")
			}
			for _, f := range own {
				assert.NoFileExists(t, filepath.Join(dir, f), "Load left its own temporary file")
			}
		})
	}
}
