package presence

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

// Only EINVAL from a directory fsync is forgiven, matched as an error, not
// as text: an I/O error on a directory whose name happens to read "invalid
// argument" is still a failed save.
func TestDirSyncUnsupported(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&fs.PathError{Op: "sync", Path: "/var/lib/broker", Err: syscall.EINVAL}, true}, // as os.File.Sync returns it
		{fmt.Errorf("save: %w", &fs.PathError{Op: "sync", Path: "/d", Err: syscall.EINVAL}), true},
		{&fs.PathError{Op: "sync", Path: "/var/lib/broker", Err: syscall.EIO}, false},
		{&fs.PathError{Op: "sync", Path: "/mnt/invalid argument", Err: syscall.EIO}, false},
		{errors.New("presence: invalid argument"), false},
	} {
		if got := dirSyncUnsupported(c.err); got != c.want {
			t.Errorf("dirSyncUnsupported(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
