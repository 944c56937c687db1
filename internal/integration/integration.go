// Package integration decides what a test does when a program it needs,
// such as redis-server or chromium, is not installed: it fails, naming the
// Debian package that provides the program, so that a missing program can
// never pass for a passing test. A user who knows the tests cannot run sets
// PRESENCE_SKIP_INTEGRATION=1; then they are skipped, loudly.
package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SkipEnv names the environment variable that, set to "1", skips every
// test that needs an external program, installed or not.
const SkipEnv = "PRESENCE_SKIP_INTEGRATION"

// Need returns the path of program, or else of the first of alternatives
// found on PATH, for a test that runs it. When SkipEnv is "1" it skips t
// instead. When none of them is installed it fails t with a message naming
// debPackage, the Debian package that provides them.
//
// A skip is announced twice: in t.Skip's message (go test -v), and once per
// test binary on the terminal, because go test prints nothing but "ok" for
// a package that passes, whatever its tests wrote.
func Need(t testing.TB, debPackage, program string, alternatives ...string) string {
	t.Helper()
	programs := append([]string{program}, alternatives...)
	if os.Getenv(SkipEnv) == "1" {
		msg := fmt.Sprintf("SKIPPED: %s=1, so %s (which needs %s) does not run", SkipEnv, t.Name(), program)
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

// RedisServer starts a redis-server (see [Need]) on a free 127.0.0.1 port,
// without persistence, waits until it answers PING, and returns its
// address. The server is killed, by its PID, when t ends.
func RedisServer(t testing.TB) string {
	t.Helper()
	bin := Need(t, "redis-server", "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ping(addr) {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING within 10s", addr)
		}
	}
}

// ping reports whether a Redis server at addr answers PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	reply := make([]byte, 7)
	_, err = io.ReadFull(c, reply)
	return err == nil && string(reply) == "+PONG\r\n"
}
