package e2e

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

// The page of a broker with a real-time group (1 s TTL) and a batch group
// (5 min TTL), read with the default 30 s: both groups show active, the
// batch job although it last polled 2 minutes ago, and each row shows the
// TTL it was judged by. When one real-time worker stops, it goes stale
// 1.5 s later, within its own budget, while the page's 30 s would still
// call it active; its group mate and the batch job stay active.
func TestDeclaredTTLsInChromium(t *testing.T) {
	ctx, cancel := browser(t)
	defer cancel()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{now: t0}
	reg := presence.New(presence.WithTTLBounds(time.Second, time.Hour))
	beat := func(g, c string, ttl time.Duration, at time.Time) {
		if err := reg.HeartbeatWithTTL(presence.Key{Queue: "orders", Group: g, Consumer: c}, 1, ttl, at); err != nil {
			t.Fatal(err)
		}
	}
	beat("realtime", "rt-0", time.Second, t0)
	beat("realtime", "rt-1", time.Second, t0)
	beat("batch", "job-0", 5*time.Minute, t0.Add(-2*time.Minute))
	beat("workers", "w1", 0, t0) // declares nothing: the page's TTL

	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{Now: clk.Now})))
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()
	dir := artifacts(t)

	ttlOf := func(consumer string, text, title *string) chromedp.Action {
		sel := `tr[data-consumer="` + consumer + `"] td.ttl`
		return chromedp.Tasks{
			chromedp.Text(sel, text, chromedp.ByQuery),
			chromedp.AttributeValue(sel, "title", title, nil, chromedp.ByQuery),
		}
	}
	var rtTTL, rtTitle, jobTTL, jobTitle, wTTL, wTitle string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/presence/"),
		chromedp.WaitVisible(row("rt-0", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("rt-1", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("job-0", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("w1", "active"), chromedp.ByQuery),
		ttlOf("rt-0", &rtTTL, &rtTitle),
		ttlOf("job-0", &jobTTL, &jobTitle),
		ttlOf("w1", &wTTL, &wTitle),
		shot(dir, "ttl-1-both-active.png"),
	); err != nil {
		t.Fatalf("both groups active: %v", err)
	}
	if rtTTL != "1s" || jobTTL != "5m0s" || wTTL != "30s" {
		t.Errorf("ttl column shows %q, %q, %q; want 1s, 5m0s, 30s", rtTTL, jobTTL, wTTL)
	}
	if rtTitle != "declared by the consumer" || jobTitle != rtTitle || wTitle == rtTitle {
		t.Errorf("ttl titles %q, %q, %q do not tell declared budgets from the page's", rtTitle, jobTitle, wTitle)
	}

	// rt-0 stops; 1.5 s later the others have beaten (the batch job not
	// since 2 min ago) and rt-0 is stale by its own 1 s.
	now := t0.Add(1500 * time.Millisecond)
	clk.Set(now)
	beat("realtime", "rt-1", time.Second, now)
	beat("workers", "w1", 0, now)
	var total string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(row("rt-0", "stale"), chromedp.ByQuery),
		chromedp.WaitVisible(row("rt-1", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("job-0", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("w1", "active"), chromedp.ByQuery),
		chromedp.Text("#total-stale", &total, chromedp.ByQuery),
		shot(dir, "ttl-2-realtime-stale.png"),
	); err != nil {
		t.Fatalf("real-time worker stale: %v", err)
	}
	if total != "1 stale" {
		t.Errorf("header says %q, want 1 stale", total)
	}

	// Past 2 s it is expired, and a sweep with the page's 30 s prunes it.
	now = t0.Add(2500 * time.Millisecond)
	clk.Set(now)
	beat("realtime", "rt-1", time.Second, now)
	if n := reg.PruneExpired(now, presence.DefaultTTL); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if err := chromedp.Run(ctx,
		chromedp.WaitNotPresent(`tr[data-consumer="rt-0"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row("rt-1", "active"), chromedp.ByQuery),
		chromedp.WaitVisible(row("job-0", "active"), chromedp.ByQuery),
		shot(dir, "ttl-3-pruned.png"),
	); err != nil {
		t.Fatalf("pruned: %v", err)
	}
}
