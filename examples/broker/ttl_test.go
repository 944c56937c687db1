package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/integration"
	"github.com/seed351623e9/presence/presencehttp"
	"github.com/seed351623e9/presence/presenceprom"
	"github.com/seed351623e9/presence/presenceredis"
)

// The acceptance test of per-consumer TTLs: a 5-minute batch consumer and a
// 1-second real-time consumer in one registry, read with the default 30 s,
// are each classified, pruned and evented by their own budget through the
// views, the HTTP API, the metrics, a checkpoint round trip and a Redis
// round trip (flushed by one broker's mirror, restored by another's).
var (
	rtKey    = presence.Key{Queue: "orders", Group: "realtime", Consumer: "rt"}
	batchKey = presence.Key{Queue: "orders", Group: "batch", Consumer: "job"}
	t0       = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
)

// at is each instant the test reads at, and each consumer's state there.
var at = []struct {
	after     time.Duration
	rt, batch presence.State
}{
	{0, presence.Active, presence.Active},
	{1500 * time.Millisecond, presence.Stale, presence.Active},
	{3 * time.Second, presence.Expired, presence.Active},
	{2 * time.Minute, presence.Expired, presence.Active}, // 4 × the default TTL: the batch job is still active
	{6 * time.Minute, presence.Expired, presence.Stale},
	{11 * time.Minute, presence.Expired, presence.Expired},
}

func mixed(t *testing.T) *presence.Registry {
	t.Helper()
	r := presence.New()
	if err := r.HeartbeatWithTTL(rtKey, 1, time.Second, t0); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(batchKey).HeartbeatWithTTL(1, 5*time.Minute, t0); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkEveryLayer reads r at every instant of at through the views, the
// HTTP API and the metrics, and checks each consumer's state and TTL.
func checkEveryLayer(t *testing.T, r *presence.Registry, layer string) {
	t.Helper()
	var now time.Time
	clock := func() time.Time { return now }
	api := httptest.NewServer(presencehttp.New(r, presencehttp.Options{Now: clock}))
	defer api.Close()
	metrics := presenceprom.New(r, presenceprom.Options{Now: clock})
	for _, step := range at {
		now = t0.Add(step.after)
		want := map[string]presence.State{"rt": step.rt, "job": step.batch}
		ttls := map[string]time.Duration{"rt": time.Second, "job": 5 * time.Minute}

		// The views.
		for _, c := range r.Snapshot(now, presence.DefaultTTL) {
			if c.State != want[c.Consumer] || c.TTL != ttls[c.Consumer] {
				t.Errorf("%s, Snapshot at +%v: %s is %v under %v, want %v under %v", layer, step.after, c.Consumer, c.State, c.TTL, want[c.Consumer], ttls[c.Consumer])
			}
		}
		var stats presence.Counts
		stats.Add(step.rt)
		stats.Add(step.batch)
		if got := r.Stats(now, presence.DefaultTTL); got != stats {
			t.Errorf("%s, Stats at +%v = %+v, want %+v", layer, step.after, got, stats)
		}

		// The HTTP API.
		resp, err := http.Get(api.URL + "/consumers")
		if err != nil {
			t.Fatal(err)
		}
		var rows []presencehttp.Row
		err = json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
		if err != nil || len(rows) != 2 {
			t.Fatalf("%s, /consumers at +%v: %d rows, %v", layer, step.after, len(rows), err)
		}
		for _, row := range rows {
			if row.State != want[row.Consumer].String() || !row.TTLDeclared || row.TTLMS != ttls[row.Consumer].Milliseconds() {
				t.Errorf("%s, /consumers at +%v: %+v, want %v under %v", layer, step.after, row, want[row.Consumer], ttls[row.Consumer])
			}
		}

		// The metrics.
		var exp strings.Builder
		exp.WriteString("# HELP presence_consumers Consumers by queue, group and state (active, stale, expired) at scrape time; queue=group=\"__other__\" sums the groups beyond the cap.\n# TYPE presence_consumers gauge\n")
		for _, g := range []struct {
			name string
			s    presence.State
		}{{"batch", step.batch}, {"realtime", step.rt}} {
			for _, s := range []presence.State{presence.Active, presence.Expired, presence.Stale} {
				n := 0
				if s == g.s {
					n = 1
				}
				exp.WriteString(`presence_consumers{group="` + g.name + `",queue="orders",state="` + s.String() + `"} ` + strconv.Itoa(n) + "\n")
			}
		}
		if err := testutil.CollectAndCompare(metrics, strings.NewReader(exp.String()), "presence_consumers"); err != nil {
			t.Errorf("%s, metrics at +%v: %v", layer, step.after, err)
		}
	}
}

// checkPruneAndEvents sweeps r with the default TTL: the real-time consumer
// goes stale and is pruned within its own 2 s, the batch job within its
// own 10 min, each with its events.
func checkPruneAndEvents(t *testing.T, r *presence.Registry, layer string) {
	t.Helper()
	sub := r.Subscribe(16)
	defer sub.Close()
	type event struct {
		kind     presence.EventKind
		consumer string
	}
	sweep := func(after time.Duration, wantPruned int, want ...event) {
		t.Helper()
		if n := r.PruneExpired(t0.Add(after), presence.DefaultTTL); n != wantPruned {
			t.Errorf("%s, prune at +%v removed %d, want %d", layer, after, n, wantPruned)
		}
		var got []event
		for len(sub.C) > 0 {
			e := <-sub.C
			got = append(got, event{e.Kind, e.Key.Consumer})
		}
		if len(got) != len(want) || len(want) > 0 && got[0] != want[0] {
			t.Errorf("%s, prune at +%v emitted %v, want %v", layer, after, got, want)
		}
	}
	sweep(1500*time.Millisecond, 0, event{presence.EventStale, "rt"})
	sweep(2500*time.Millisecond, 1, event{presence.EventExpired, "rt"})
	sweep(5*time.Minute, 0)
	sweep(6*time.Minute, 0, event{presence.EventStale, "job"})
	sweep(11*time.Minute, 1, event{presence.EventExpired, "job"})
}

func TestDeclaredTTLThroughEveryLayer(t *testing.T) {
	r := mixed(t)
	checkEveryLayer(t, r, "registry")

	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := presence.New()
	if _, err := restored.ReadFrom(&buf); err != nil {
		t.Fatal(err)
	}
	checkEveryLayer(t, restored, "after a checkpoint")

	rdb := redis.NewClient(&redis.Options{Addr: integration.RedisServer(t)})
	defer rdb.Close()
	ctx := context.Background()
	out := presenceredis.New(r, rdb, presenceredis.Options{})
	if _, err := out.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, step := range at {
		now := t0.Add(step.after)
		rows, err := out.Snapshot(ctx, now, presence.DefaultTTL)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]presence.State{"rt": step.rt, "job": step.batch}
		for _, c := range rows {
			if c.State != want[c.Consumer] {
				t.Errorf("Redis, Snapshot at +%v: %s is %v under %v, want %v", step.after, c.Consumer, c.State, c.TTL, want[c.Consumer])
			}
		}
	}
	fromRedis := presence.New()
	in := presenceredis.New(fromRedis, rdb, presenceredis.Options{})
	if n, err := in.Restore(ctx); err != nil || n != 2 {
		t.Fatalf("Restore from Redis: %d rows, %v", n, err)
	}
	checkEveryLayer(t, fromRedis, "after a Redis round trip")

	checkPruneAndEvents(t, r, "registry")
	checkPruneAndEvents(t, restored, "after a checkpoint")
	checkPruneAndEvents(t, fromRedis, "after a Redis round trip")
}
