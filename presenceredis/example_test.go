package presenceredis_test

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceredis"
)

// A broker mirrors its registry into Redis: it restores at startup, then
// flushes in the background; every broker's dashboard reads the merged view.
// (No Output: it needs a Redis server.)
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := presence.New()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}) // or redis.NewClusterClient
	m := presenceredis.New(reg, rdb, presenceredis.Options{FlushInterval: time.Second})

	_, _ = m.Restore(ctx) // real times from before the restart
	go func() { _ = m.Run(ctx) }()

	rows, _ := m.Snapshot(ctx, time.Now(), presence.DefaultTTL) // every broker's consumers
	_ = rows
}
