// Package integration decides what a test does when a program it needs,
// such as redis-server or chromium, is not installed: it fails, naming the
// Debian package that provides the program, so that a missing program can
// never pass for a passing test. A user who knows the tests cannot run sets
// PRESENCE_SKIP_INTEGRATION=1; then they are skipped, loudly.
package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// SkipEnv names the environment variable that, set to "1", skips every
// test that needs an external program, installed or not.
const SkipEnv = "PRESENCE_SKIP_INTEGRATION"

// Need returns the path of the first of programs found on PATH, for a test
// that runs it. When SkipEnv is "1" it skips t instead. When none of the
// programs is installed it fails t with a message naming debPackage, the
// Debian package that provides them.
//
// A skip is announced twice: in t.Skip's message (go test -v), and once per
// test binary on the terminal, because go test prints nothing but "ok" for
// a package that passes, whatever its tests wrote.
func Need(t testing.TB, debPackage string, programs ...string) string {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		msg := fmt.Sprintf("SKIPPED: %s=1, so %s (which needs %s) does not run", SkipEnv, t.Name(), programs[0])
		announce(msg)
		t.Skip(msg)
	}
	for _, p := range programs {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s needs %s, which is not installed: run `apt-get install %s` (Debian/Ubuntu), "+
		"or set %s=1 to skip the tests that need it", t.Name(), strings.Join(programs, " or "), debPackage, SkipEnv)
	return ""
}

var once sync.Once

// announce writes msg once per test binary where the user will see it: the
// controlling terminal if there is one, else standard error (shown by go
// test -v and for failing packages).
func announce(msg string) {
	once.Do(func() {
		var w io.Writer = os.Stderr
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			defer tty.Close()
			w = tty
		}
		pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
		fmt.Fprintf(w, "!!! %s: %s (and any other integration test in this package)\n", pkg, msg)
	})
}
