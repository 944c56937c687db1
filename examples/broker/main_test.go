package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The broker runs, serves the page, the API and the metrics, and its
// consumers show up.
func TestBrokerRuns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, config{consumers: 6, ttl: time.Second}, ln, &out) }()
	defer func() { cancel(); <-done }()

	base := "http://" + ln.Addr().String()
	var rows []map[string]any
	for i := 0; i < 200 && len(rows) < 6; i++ { // until every consumer has beaten once
		time.Sleep(20 * time.Millisecond)
		resp, err := http.Get(base + "/presence/consumers")
		if err != nil {
			continue
		}
		rows = nil
		_ = json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
	}
	if len(rows) != 6 {
		t.Fatalf("got %d consumers, want 6", len(rows))
	}
	for _, path := range []string{"/presence/", "/metrics", "/presence/groups"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && !strings.Contains(string(b), "presence_heartbeats_total") {
			t.Fatalf("metrics: %s", b)
		}
	}
	if !strings.Contains(out.String(), base+"/presence/") {
		t.Fatalf("the URL was not printed: %q", out.String())
	}
}
