package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The behaviour is checked in a child process, since failing and skipping
// end the test that calls Need.
func TestNeed(t *testing.T) {
	if mode := os.Getenv("INTEGRATION_CHILD"); mode != "" {
		path := Need(t, "no-such-package", "no-such-program-"+mode)
		t.Logf("found %s", path)
		return
	}
	for _, c := range []struct {
		skip     string
		wantFail bool
		want     string
	}{
		{skip: "", wantFail: true, want: "apt-get install no-such-package"},
		{skip: "0", wantFail: true, want: "or set PRESENCE_SKIP_INTEGRATION=1"},
		{skip: "1", wantFail: false, want: "SKIPPED: PRESENCE_SKIP_INTEGRATION=1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNeed$", "-test.v")
		cmd.Env = append(os.Environ(), "INTEGRATION_CHILD=x", SkipEnv+"="+c.skip)
		detach(cmd) // no terminal: the announcement goes to stderr, which the checks read
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != c.wantFail {
			t.Errorf("%s=%q: failed=%v, want %v\n%s", SkipEnv, c.skip, failed, c.wantFail, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s=%q: output lacks %q:\n%s", SkipEnv, c.skip, c.want, out)
		}
		if c.skip == "1" && !strings.Contains(string(out), "--- SKIP") {
			t.Errorf("%s=1: the test was not skipped:\n%s", SkipEnv, out)
		}
	}
}

func TestNeedFindsAnInstalledProgram(t *testing.T) {
	if os.Getenv(SkipEnv) == "1" {
		t.Skip("this test calls Need, which skips when " + SkipEnv + "=1")
	}
	if got := Need(t, "coreutils", "no-such-program", "sh"); !strings.HasSuffix(got, "/sh") {
		t.Fatalf("Need = %q, want the path of sh", got)
	}
}

// The server answers while its test runs and is gone when it ends.
func TestRedisServer(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		addr = RedisServer(t)
		if !ping(addr) {
			t.Fatalf("no PONG from %s", addr)
		}
	})
	if addr != "" && ping(addr) {
		t.Fatalf("redis-server on %s still answers after its test ended", addr)
	}
}
