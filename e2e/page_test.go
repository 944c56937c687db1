// Package e2e loads the presence page in a real headless Chromium and checks
// what an operator would see as consumers join, go stale and are pruned.
package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

// clock is the fake time the handler reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium; .ci/run installs Debian's chromium package")
	}
	t.Skip("no Chromium on this machine")
	return ""
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPresencePageInChromium(t *testing.T) {
	exe := chromium(t)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{now: t0}
	reg := presence.New()
	beat := func(q, g, c string, leases uint32, at time.Time) {
		if err := reg.Heartbeat(presence.Key{Queue: q, Group: g, Consumer: c}, leases, at); err != nil {
			t.Fatal(err)
		}
	}
	beat("orders", "workers", "w1", 2, t0)
	beat("orders", "workers", "w2", 0, t0)
	beat("billing", "invoicer", "b1", 1, t0)

	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{Now: clk.Now})))
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	dir := artifacts(t)
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var png []byte
			if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name), png, 0o644)
		})
	}
	row := func(consumer, state string) string {
		return `tr[data-consumer="` + consumer + `"][data-state="` + state + `"]`
	}

	// 1. Everyone has just joined: all active.
	var total string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/presence/"),
		chromedp.WaitVisible(row("w1", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("b1", "active"), chromedp.ByQuery),
		chromedp.Text("#total-active", &total, chromedp.ByQuery),
		shot("1-joined.png"),
	); err != nil {
		t.Fatalf("joined: %v", err)
	}
	if total != "3 active" {
		t.Fatalf("header says %q, want 3 active", total)
	}

	// 2. 45 s later w2 and b1 kept beating, w1 did not: w1 is stale.
	clk.Set(t0.Add(45 * time.Second))
	beat("orders", "workers", "w2", 0, t0.Add(45*time.Second))
	beat("billing", "invoicer", "b1", 1, t0.Add(45*time.Second))
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(row("w1", "stale"), chromedp.ByQuery),
		chromedp.WaitVisible(row("w2", "active"), chromedp.ByQuery),
		shot("2-stale.png"),
	); err != nil {
		t.Fatalf("stale: %v", err)
	}

	// 3. Past 2·TTL w1 is expired, and a sweep prunes it: its row goes.
	clk.Set(t0.Add(70 * time.Second))
	beat("orders", "workers", "w2", 0, t0.Add(70*time.Second))
	beat("billing", "invoicer", "b1", 1, t0.Add(70*time.Second))
	if n := reg.PruneExpired(clk.Now(), presence.DefaultTTL); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if err := chromedp.Run(ctx,
		chromedp.WaitNotPresent(`tr[data-consumer="w1"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row("w2", "active"), chromedp.ByQuery),
		chromedp.Text("#total-active", &total, chromedp.ByQuery),
		shot("3-pruned.png"),
	); err != nil {
		t.Fatalf("pruned: %v", err)
	}
	if total != "2 active" {
		t.Fatalf("header says %q after the prune, want 2 active", total)
	}
	t.Logf("screenshots in %s", dir)
}
