package presenceredis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed351623e9/presence"
)

// BenchmarkFlush measures a steady-state flush: every consumer beat since
// the last flush, so every flush writes all of them. Besides ns/op it
// reports, per consumer written: consumers/s, the bytes Redis received, the
// top-level commands and the commands scripts ran inside Redis, and the CPU
// time of each side (this process, and the Redis servers from INFO cpu).
//
//	go test -run '^$' -bench BenchmarkFlush -benchtime 10x ./presenceredis
func BenchmarkFlush(b *testing.B) {
	for _, target := range []string{"server", "cluster"} {
		for _, perGroup := range []int{100, 1} {
			for _, batch := range []int{2000, 10000} {
				b.Run(fmt.Sprintf("redis=%s/consumers=200000/per_group=%d/batch=%d", target, perGroup, batch), func(b *testing.B) {
					var rdb redis.UniversalClient
					var servers []*server
					if target == "server" {
						s := startRedis(b)
						rdb, servers = s.client(b), []*server{s}
					} else {
						c := startCluster(b)
						rdb = c.client(b)
						ms, err := c.masters()
						if err != nil {
							b.Fatal(err)
						}
						servers = ms
					}
					benchFlush(b, rdb, servers, 200000, perGroup, batch)
				})
			}
		}
	}
}

func benchFlush(b *testing.B, rdb redis.UniversalClient, servers []*server, n, perGroup, batch int) {
	ctx := context.Background()
	r := presence.New(presence.WithPresize(n))
	keys := make([]presence.Key, n)
	for i := range keys {
		g := i / perGroup
		keys[i] = presence.Key{Queue: "queue-" + strconv.Itoa(g%10), Group: "group-" + strconv.Itoa(g), Consumer: "consumer-" + strconv.Itoa(i)}
	}
	at := t0
	beat := func() {
		at = at.Add(time.Second)
		for i, k := range keys {
			if err := r.Heartbeat(k, uint32(i%3), at); err != nil {
				b.Fatal(err)
			}
		}
	}
	beat()
	m := New(r, rdb, Options{BatchConsumers: batch})
	if _, err := m.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	var written, pipelines int
	var before, after serverStats
	var clientCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		beat()
		before.add(b, servers, -1)
		cpu0 := processCPU()
		b.StartTimer()
		st, err := m.Flush(ctx)
		b.StopTimer()
		clientCPU += processCPU() - cpu0
		after.add(b, servers, +1)
		if err != nil {
			b.Fatal(err)
		}
		if st.Consumers != n {
			b.Fatalf("flushed %d of %d consumers", st.Consumers, n)
		}
		written += st.Consumers
		pipelines += st.Pipelines
		b.StartTimer()
	}
	b.StopTimer()
	d := before.plus(after)
	per := float64(written)
	b.ReportMetric(per/b.Elapsed().Seconds(), "consumers/s")
	b.ReportMetric(float64(d.inBytes)/per, "B_in/consumer")
	b.ReportMetric(float64(d.commands)/per, "cmds/consumer")
	b.ReportMetric(float64(d.calls)/per, "calls/consumer")
	b.ReportMetric(float64(d.serverCPU.Nanoseconds())/per, "redis_cpu_ns/consumer")
	b.ReportMetric(float64(clientCPU.Nanoseconds())/per, "client_cpu_ns/consumer")
	b.ReportMetric(per/float64(pipelines), "consumers/pipeline")
}

// serverStats accumulates counters read from INFO, signed: subtract the
// readings before a flush, add those after.
type serverStats struct {
	inBytes, commands, calls int64
	serverCPU                time.Duration
}

func (s *serverStats) plus(o serverStats) serverStats {
	return serverStats{s.inBytes + o.inBytes, s.commands + o.commands, s.calls + o.calls, s.serverCPU + o.serverCPU}
}

// add adds sign times the current counters of every server.
func (s *serverStats) add(b *testing.B, servers []*server, sign int64) {
	for _, srv := range servers {
		c := srv.direct()
		info, err := c.Info(context.Background(), "stats", "cpu", "commandstats").Result()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch {
			case k == "total_net_input_bytes":
				n, _ := strconv.ParseInt(v, 10, 64)
				s.inBytes += sign * n
			case k == "total_commands_processed":
				n, _ := strconv.ParseInt(v, 10, 64)
				s.commands += sign * n
			case k == "used_cpu_user" || k == "used_cpu_sys":
				f, _ := strconv.ParseFloat(v, 64)
				s.serverCPU += time.Duration(sign * int64(f*1e9))
			case strings.HasPrefix(k, "cmdstat_") && k != "cmdstat_evalsha" && k != "cmdstat_eval" && k != "cmdstat_info":
				// calls=N,...: commands run by scripts (and the few
				// top-level ones, such as HMGET for the loss markers).
				calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
				n, _ := strconv.ParseInt(calls, 10, 64)
				s.calls += sign * n
			}
		}
	}
}

// processCPU returns the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
