package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/integration"
	"github.com/seed351623e9/presence/presenceredis"
)

const consumers = 6

// startBroker runs the broker on a free 127.0.0.1 port until every
// simulated consumer has beaten once, and returns its base URL and a
// function that stops it and returns what it printed.
func startBroker(t *testing.T, c config) (base string, stop func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, c, ln, &out) }()
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		return out.String()
	}
	t.Cleanup(func() { stop() })

	base = "http://" + ln.Addr().String()
	var rows []map[string]any
	for i := 0; i < 200 && len(rows) < c.total(); i++ { // until every consumer has beaten once
		time.Sleep(20 * time.Millisecond)
		resp, err := http.Get(base + "/presence/consumers")
		if err != nil {
			continue
		}
		rows = nil
		_ = json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
	}
	if len(rows) != c.total() {
		t.Fatalf("got %d consumers, want %d", len(rows), c.total())
	}
	return base, stop
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(b) == 0 {
		t.Fatalf("%s: %d, %d bytes, %v", url, resp.StatusCode, len(b), err)
	}
	return string(b)
}

// The broker runs, serves the page, the API and the metrics, and its
// consumers show up.
func TestBrokerRuns(t *testing.T) {
	base, stop := startBroker(t, config{consumers: consumers, ttl: time.Second})
	get(t, base+"/presence/")
	get(t, base+"/presence/groups")
	metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`presence_consumers{group="workers",queue="orders",state="active"}`, // presenceprom
		"presence_heartbeats_total",
		"presence_registrations_total 6",
		"go_goroutines",    // the Go runtime collector
		"process_open_fds", // the process collector
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	if out := stop(); !strings.Contains(out, base+"/presence/") {
		t.Fatalf("the URL was not printed: %q", out)
	}
}

// With -redis the broker mirrors its consumers into Redis, and flushes them
// all when it stops.
func TestBrokerMirrorsToRedis(t *testing.T) {
	addr := integration.RedisServer(t)
	_, stop := startBroker(t, config{consumers: consumers, ttl: time.Minute, redis: addr})
	if out := stop(); !strings.Contains(out, "mirroring to:  redis://"+addr) {
		t.Fatalf("the Redis address was not printed: %q", out)
	}

	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	m := presenceredis.New(presence.New(), rdb, presenceredis.Options{})
	rows, err := m.Snapshot(context.Background(), time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Key.Consumer)
	}
	sort.Strings(got)
	want := []string{"worker-0", "worker-1", "worker-2", "worker-3", "worker-4", "worker-5"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Redis holds %v, want %v", got, want)
	}
}

// The real-time and batch groups are judged by the TTLs they declare, not by
// the broker's 1.2 s: a batch job that polls every 3 s stays active past
// 2.4 s (expired by the broker's TTL), and the real-time worker that dies
// is stale past its own 300 ms, while the broker's TTL would still call it
// active, and is then pruned.
func TestBrokerGroupsWithTheirOwnTTLs(t *testing.T) {
	c := config{consumers: 1, ttl: 1200 * time.Millisecond,
		realtime: 2, realtimeTTL: 300 * time.Millisecond, batch: 1, batchTTL: 20 * time.Second, batchEvery: 3 * time.Second}
	base, _ := startBroker(t, c)
	type row struct {
		Consumer    string `json:"consumer"`
		State       string `json:"state"`
		AgeMS       int64  `json:"last_seen_age_ms"`
		TTLMS       int64  `json:"ttl_ms"`
		TTLDeclared bool   `json:"ttl_declared"`
	}
	var batchOld, deadStale, deadGone bool
	deadline := time.Now().Add(30 * time.Second)
	for !(batchOld && deadStale && deadGone) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		var rows []row
		if err := json.Unmarshal([]byte(get(t, base+"/presence/consumers")), &rows); err != nil {
			t.Fatal(err)
		}
		byName := map[string]row{}
		for _, r := range rows {
			byName[r.Consumer] = r
		}
		job, ok := byName["job-0"]
		if !ok || job.TTLMS != 20000 || !job.TTLDeclared || job.State != "active" {
			t.Fatalf("the batch job is %+v (present %v), want active under its own 20 s", job, ok)
		}
		batchOld = batchOld || job.AgeMS > 2400
		if rt, ok := byName["rt-1"]; ok && (rt.TTLMS != 300 || !rt.TTLDeclared) {
			t.Fatalf("the live real-time worker is %+v, want it under its own 300 ms", rt)
		}
		dead, present := byName["rt-0"]
		if present && dead.AgeMS > 300 && dead.State == "active" {
			t.Fatalf("the dead real-time worker is %+v: active past its own TTL", dead)
		}
		deadStale = deadStale || present && dead.AgeMS <= 1200 && dead.State == "stale"
		deadGone = deadGone || deadStale && !present
	}
	if !batchOld || !deadStale || !deadGone {
		t.Fatalf("saw the batch job active past 2.4 s: %v; the dead real-time worker stale within 1.2 s: %v, then pruned: %v",
			batchOld, deadStale, deadGone)
	}
}
