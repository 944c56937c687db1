// Package e2e loads the presence page in a real headless Chromium and checks
// what an operator would see as consumers join, go stale and are pruned.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/integration"
	"github.com/seed351623e9/presence/presencehttp"
)

// clock is the fake time the handler reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// chromium returns the browser's path; without one the test fails naming
// the Debian package, or skips loudly with PRESENCE_SKIP_INTEGRATION=1.
func chromium(t *testing.T) string {
	return integration.Need(t, "chromium", "chromium", "chromium-browser", "google-chrome")
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

// browser starts a headless Chromium and returns a context for its one
// tab, with a deadline of two minutes; cancel closes it.
func browser(t *testing.T) (ctx context.Context, cancel func()) {
	exe := chromium(t)
	// The profile directory is removed with retries: Chromium's helper
	// processes can still be writing to it for a moment after the browser
	// has been told to exit, which makes t.TempDir's single RemoveAll fail.
	profile, err := os.MkdirTemp("", "presence-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; os.RemoveAll(profile) != nil && i < 50; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// Events newer than chromedp's protocol tables (an address space
	// "Loopback") cannot be decoded; they concern no step here.
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "could not unmarshal event") {
			t.Logf("chromedp: %s", msg)
		}
	}))
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	return ctx, func() { cancelTimeout(); cancelTab(); cancelAlloc() }
}

// shot saves a screenshot of the page as dir/name.
func shot(dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var png []byte
		if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), png, 0o644)
	})
}

// row selects the table row of consumer in state.
func row(consumer, state string) string {
	return `tr[data-consumer="` + consumer + `"][data-state="` + state + `"]`
}

func TestPresencePageInChromium(t *testing.T) {
	ctx, cancel := browser(t)
	defer cancel()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{now: t0}
	reg := presence.New()
	beat := func(q, g, c string, leases uint32, at time.Time) {
		if err := reg.Heartbeat(presence.Key{Queue: q, Group: g, Consumer: c}, leases, at); err != nil {
			t.Fatal(err)
		}
	}
	beat("orders", "workers", "w1", 2, t0.Add(-3*time.Minute)) // registered 3 min ago
	beat("orders", "workers", "w1", 2, t0)
	beat("orders", "workers", "w2", 0, t0)
	beat("billing", "invoicer", "b1", 1, t0)

	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{Now: clk.Now})))
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	dir := artifacts(t)
	rowsShown := func(n *int) chromedp.Action {
		return chromedp.Evaluate(`document.querySelectorAll("tr[data-consumer]").length`, n)
	}
	// set changes a filter the way typing or picking does.
	set := func(id, value string) chromedp.Action {
		return chromedp.Evaluate(`(() => { const e = document.getElementById(`+strconv.Quote(id)+`); e.value = `+strconv.Quote(value)+
			`; e.dispatchEvent(new Event(e.tagName === "SELECT" ? "change" : "input")); })()`, nil)
	}

	// 1. Everyone has just joined: all active. The page says which TTL
	// classifies them, and it styles and runs under its own CSP.
	var total, ttl, registered, registeredTitle, align, badge string
	var lefts []float64
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/presence/"),
		chromedp.WaitVisible(row("w1", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("b1", "active"), chromedp.ByQuery),
		chromedp.Text("#total-active", &total, chromedp.ByQuery),
		chromedp.Text("#ttl", &ttl, chromedp.ByQuery),
		chromedp.Text(`tr[data-consumer="w1"] td.registered`, &registered, chromedp.ByQuery),
		chromedp.AttributeValue(`tr[data-consumer="w1"] td.registered`, "title", &registeredTitle, nil, chromedp.ByQuery),
		chromedp.Evaluate(`getComputedStyle(document.querySelector("th.num")).textAlign`, &align),
		chromedp.Evaluate(`getComputedStyle(document.querySelector(".state.active")).backgroundColor`, &badge),
		// The leases column starts at the same x in every table.
		chromedp.Evaluate(`[...document.querySelectorAll("table")].map(t => t.querySelectorAll("th")[5].getBoundingClientRect().left)`, &lefts),
		shot(dir, "1-joined.png"),
	); err != nil {
		t.Fatalf("joined: %v", err)
	}
	if total != "3 active" {
		t.Fatalf("header says %q, want 3 active", total)
	}
	if ttl != "TTL 30s" {
		t.Errorf("TTL shown as %q, want TTL 30s", ttl)
	}
	if registered != "3 min 0 s ago" || !strings.Contains(registeredTitle, "2026-11-29T11:57:00Z") {
		t.Errorf("registered shows %q with title %q, want an age and the absolute time on hover", registered, registeredTitle)
	}
	if align != "right" {
		t.Errorf("numeric headers are aligned %q, want right", align)
	}
	if badge != "rgb(26, 127, 55)" {
		t.Errorf("the active badge is %q: the stylesheet did not apply", badge)
	}
	if len(lefts) != 2 || lefts[0] != lefts[1] {
		t.Errorf("the leases column starts at %v: columns shift between tables", lefts)
	}

	// 2. 45 s later w2 and b1 kept beating, w1 did not: w1 is stale.
	clk.Set(t0.Add(45 * time.Second))
	beat("orders", "workers", "w2", 0, t0.Add(45*time.Second))
	beat("billing", "invoicer", "b1", 1, t0.Add(45*time.Second))
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(row("w1", "stale"), chromedp.ByQuery),
		chromedp.WaitVisible(row("w2", "active"), chromedp.ByQuery),
		shot(dir, "2-stale.png"),
	); err != nil {
		t.Fatalf("stale: %v", err)
	}

	// 3. The filters are the server's: a search, a state, a group picked
	// from its heading; clear brings everyone back.
	var n int
	if err := chromedp.Run(ctx,
		set("f-search", "W"),
		chromedp.WaitNotPresent(`tr[data-consumer="b1"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row("w2", "active"), chromedp.ByQuery),
		set("f-state", "stale"),
		chromedp.WaitNotPresent(`tr[data-consumer="w2"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row("w1", "stale"), chromedp.ByQuery),
		shot(dir, "3-filtered.png"),
		chromedp.Click("#f-clear", chromedp.ByQuery),
		chromedp.WaitVisible(row("b1", "active"), chromedp.ByQuery),
		chromedp.Click(`div.group[data-group="invoicer"] button.link`, chromedp.ByQuery),
		chromedp.WaitNotPresent(`tr[data-consumer="w1"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row("b1", "active"), chromedp.ByQuery),
		rowsShown(&n),
		// The group box now suggests the groups of queue billing.
		chromedp.Poll(`document.querySelector('#group-names option[value="invoicer"]') !== null`, nil, chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Fatalf("filters: %v", err)
	}
	if n != 1 {
		t.Errorf("the group filter shows %d rows, want 1", n)
	}
	var group string
	if err := chromedp.Run(ctx,
		chromedp.Value("#f-group", &group, chromedp.ByQuery),
		chromedp.Click("#f-clear", chromedp.ByQuery),
		chromedp.WaitVisible(row("w1", "stale"), chromedp.ByQuery),
	); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if group != "invoicer" {
		t.Errorf("the group filter says %q, want invoicer", group)
	}

	// 4. Past 2·TTL w1 is expired, and a sweep prunes it: its row goes.
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
		shot(dir, "4-pruned.png"),
	); err != nil {
		t.Fatalf("pruned: %v", err)
	}
	if total != "2 active" {
		t.Fatalf("header says %q after the prune, want 2 active", total)
	}

	// 5. 10,000 more consumers: the page holds one page of them, pages
	// forward and back, and a search finds one among them.
	for i := range 10_000 {
		beat("bulk", "g"+strconv.Itoa(i%20), fmt.Sprintf("c%05d", i), 0, clk.Now())
	}
	var info string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`tr[data-consumer="c00000"]`, chromedp.ByQuery),
		rowsShown(&n),
	); err != nil {
		t.Fatalf("10k: %v", err)
	}
	if n != 100 {
		t.Errorf("the first page shows %d rows, want 100", n)
	}
	if err := chromedp.Run(ctx,
		chromedp.Click("#next", chromedp.ByQuery),
		chromedp.WaitNotPresent(`tr[data-consumer="c00000"]`, chromedp.ByQuery),
		chromedp.Text("#pageinfo", &info, chromedp.ByQuery),
		rowsShown(&n),
		shot(dir, "5-page2.png"),
		chromedp.Click("#prev", chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-consumer="c00000"]`, chromedp.ByQuery),
		set("f-search", "c09999"),
		chromedp.WaitNotPresent(`tr[data-consumer="c00000"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-consumer="c09999"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("paging: %v", err)
	}
	if n != 100 || info != "page 2 · rows 101–200" {
		t.Errorf("page 2 shows %d rows, says %q", n, info)
	}
	t.Logf("screenshots in %s", dir)
}
