// Command cluster mirrors a registry into a Redis Cluster: it restores what
// the cluster holds, registers consumers over a few groups, deregisters some,
// flushes, and prints what the cluster holds, as every broker's dashboard
// would read it.
//
// Against the 3-master, 3-replica cluster that presenceredis's tests start
// (see the README, "Clusters: the Redis mirror"):
//
//	go run ./presenceredis/examples/cluster -addrs 127.0.0.1:PORT1,127.0.0.1:PORT2
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceredis"
)

func main() {
	addrs := flag.String("addrs", "127.0.0.1:7000", "comma-separated addresses of cluster nodes (any of them)")
	n := flag.Int("consumers", 1000, "consumers to register, over 20 groups")
	prefix := flag.String("prefix", "example", "key prefix in Redis")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, strings.Split(*addrs, ","), *prefix, *n, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addrs []string, prefix string, n int, out io.Writer) error {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:         addrs,
		DialTimeout:   200 * time.Millisecond, // a dead master is noticed at once
		DialerRetries: 1,                      // and not redialed five times per command
		ReadTimeout:   2 * time.Second,
		WriteTimeout:  2 * time.Second,
	})
	defer rdb.Close()
	reg := presence.New()
	m := presenceredis.New(reg, rdb, presenceredis.Options{Prefix: prefix, FlushInterval: time.Second})

	restored, err := m.Restore(ctx) // real times from before a restart
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(out, "restored %d consumers\n", restored)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }() // write-behind flushes, every second

	now := time.Now()
	key := func(i int) presence.Key {
		return presence.Key{Queue: "orders", Group: "group-" + strconv.Itoa(i%20), Consumer: "worker-" + strconv.Itoa(i)}
	}
	for i := range n {
		if err := reg.Heartbeat(key(i), uint32(i%3), now); err != nil {
			return err
		}
	}
	for i := range n / 10 {
		reg.Deregister(key(i)) // deleted in Redis at the next flush
	}
	cancel() // Run flushes once more before it returns
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flush: %w", err)
	}

	counts, err := m.CountByGroup(ctx, time.Now(), presence.DefaultTTL)
	if err != nil { // with a master down: the others' counts, and what is missing
		fmt.Fprintln(out, "partial read:", err)
	}
	total := 0
	for _, c := range counts {
		total += c.Total()
	}
	fmt.Fprintf(out, "Redis holds %d consumers in %d groups\n", total, len(counts))
	return nil
}
