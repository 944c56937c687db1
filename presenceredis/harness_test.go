package presenceredis

// The test harness: redis-server child processes on 127.0.0.1, each in its
// own temporary directory and without persistence, alone or as a 3-master,
// 3-replica Redis Cluster. Tests kill only the processes they started, by
// PID.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence/internal/integration"
)

// needRedis returns the paths of redis-server and redis-cli (both in the
// Debian package redis-server), or fails or skips t as [integration.Need]
// does when they are missing or PRESENCE_SKIP_INTEGRATION=1.
func needRedis(t testing.TB) (server, cli string) {
	t.Helper()
	return integration.Need(t, "redis-server", "redis-server"), integration.Need(t, "redis-server", "redis-cli")
}

// server is one redis-server child process.
type server struct {
	bin  string
	port int
	dir  string   // its working directory: nodes.conf, log
	args []string // beyond --port and --dir
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// freePort returns a port p such that p and p+10000 (a cluster node's bus
// port) are both free on 127.0.0.1.
func freePort() (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(30000)
		ok := true
		var ls []net.Listener
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free port pair")
}

func newServer(bin string, args ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "presenceredis-")
	if err != nil {
		return nil, err
	}
	args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "redis.log"}, args...)
	return &server{bin: bin, port: port, dir: dir, args: args}, nil
}

// start runs the server and waits until it answers PING.
func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	args := append([]string{"--port", strconv.Itoa(s.port), "--dir", s.dir}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not start; see %s", s.addr(), filepath.Join(s.dir, "redis.log"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// kill sends SIGKILL (no shutdown, no save) to the process this server
// started, if it runs, and reaps it.
func (s *server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// signal sends sig to the running process.
func (s *server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}

// cleanup kills the process and removes its directory.
func (s *server) cleanup() {
	s.kill()
	_ = os.RemoveAll(s.dir)
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// direct returns a plain client of this one server that does not retry.
func (s *server) direct() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// client returns a plain client, closed when t ends.
func (s *server) client(t testing.TB) *redis.Client {
	c := s.direct()
	t.Cleanup(func() { c.Close() })
	return c
}

// startRedis starts a standalone redis-server, killed when t ends.
func startRedis(t testing.TB) *server {
	t.Helper()
	bin, _ := needRedis(t)
	s, err := newServer(bin)
	require.NoError(t, err)
	t.Cleanup(s.cleanup)
	require.NoError(t, s.start())
	return s
}

// cluster is a Redis Cluster of six child processes: three masters, each
// with one replica.
type cluster struct {
	cli   string
	nodes []*server
}

// nodeTimeout is the cluster-node-timeout of test clusters: a master that
// does not answer for this long is failed over. Redis's default is 15 s;
// a short one keeps the failover tests short.
const nodeTimeout = 2 * time.Second

// startCluster starts a cluster for t alone, stopped when t ends.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	c, err := newCluster(t)
	t.Cleanup(c.cleanup)
	require.NoError(t, err)
	return c
}

var shared struct {
	once sync.Once
	c    *cluster
	err  error
}

// sharedCluster returns the cluster shared by the tests that leave its
// nodes alone (each uses its own key prefix); TestMain stops it.
func sharedCluster(t testing.TB) *cluster {
	t.Helper()
	needRedis(t)
	shared.once.Do(func() { shared.c, shared.err = newCluster(t) })
	require.NoError(t, shared.err)
	return shared.c
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.cleanup()
	}
	os.Exit(code)
}

func newCluster(t testing.TB) (*cluster, error) {
	bin, cli := needRedis(t)
	c := &cluster{cli: cli}
	var addrs []string
	for range 6 {
		s, err := newServer(bin, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout/time.Millisecond)), "--repl-diskless-sync-delay", "0")
		if err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, s)
		if err := s.start(); err != nil {
			return c, err
		}
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.Command(cli, append(args, "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if _, err := c.waitOK(30 * time.Second); err != nil {
		return c, err
	}
	return c, c.waitReplicas(30 * time.Second)
}

func (c *cluster) cleanup() {
	for _, s := range c.nodes {
		s.cleanup()
	}
}

// client returns a cluster client that, like a broker's, fails fast on a
// dead node instead of hanging, closed when t ends.
func (c *cluster) client(t testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, s := range c.nodes {
		addrs = append(addrs, s.addr())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// node is one line of CLUSTER NODES.
type node struct {
	id, addr, master string // master: the id of a replica's master, else "-"
	isMaster, failed bool
	slots            []string // ranges as printed, "0-5460"
}

// slotCount returns the number of slots n serves.
func (n node) slotCount() int {
	total := 0
	for _, r := range n.slots {
		if strings.HasPrefix(r, "[") { // a slot being migrated or imported
			continue
		}
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if ok {
			b, _ = strconv.Atoi(hi)
		}
		total += b - a + 1
	}
	return total
}

// view returns CLUSTER NODES as seen by the first live node.
func (c *cluster) view() ([]node, error) {
	var lastErr error
	for _, s := range c.nodes {
		ns, err := s.view()
		if err == nil {
			return ns, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// view returns CLUSTER NODES as seen by s.
func (s *server) view() ([]node, error) {
	rc := s.direct()
	out, err := rc.ClusterNodes(context.Background()).Result()
	rc.Close()
	if err != nil {
		return nil, err
	}
	var ns []node
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		n := node{id: f[0], addr: strings.SplitN(f[1], "@", 2)[0], master: f[3],
			isMaster: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		n.slots = f[8:]
		ns = append(ns, n)
	}
	return ns, nil
}

// server returns the child process listening on addr.
func (c *cluster) server(addr string) *server {
	for _, s := range c.nodes {
		if s.addr() == addr {
			return s
		}
	}
	return nil
}

// masters returns the servers that are live masters serving slots.
func (c *cluster) masters() ([]*server, error) {
	ns, err := c.view()
	if err != nil {
		return nil, err
	}
	var out []*server
	for _, n := range ns {
		if n.isMaster && !n.failed && len(n.slots) > 0 {
			out = append(out, c.server(n.addr))
		}
	}
	return out, nil
}

// replicaOf returns the replica of the master at addr.
func (c *cluster) replicaOf(addr string) (*server, error) {
	ns, err := c.view()
	if err != nil {
		return nil, err
	}
	var id string
	for _, n := range ns {
		if n.addr == addr {
			id = n.id
		}
	}
	for _, n := range ns {
		if n.master == id && !n.failed {
			return c.server(n.addr), nil
		}
	}
	return nil, fmt.Errorf("no replica of %s", addr)
}

// waitOK waits until every live node reports cluster_state:ok with all
// 16384 slots ok and agrees on who serves them, and returns when it saw
// that.
func (c *cluster) waitOK(timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if c.allOK() {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("cluster not ok after %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFailover waits until a replica has taken over the slots of the
// master at dead and the cluster is ok again, and returns when it saw that.
func (c *cluster) waitFailover(dead string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if ns, err := c.view(); err == nil && c.allOK() {
			served := true
			for _, n := range ns {
				if n.addr == dead && n.isMaster && len(n.slots) > 0 {
					served = false
				}
			}
			if served {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no failover of %s after %v", dead, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) allOK() bool {
	live := 0
	for _, s := range c.nodes {
		s.mu.Lock()
		running := s.cmd != nil && s.cmd.ProcessState == nil
		s.mu.Unlock()
		if !running {
			continue
		}
		rc := s.direct()
		info, err := rc.ClusterInfo(context.Background()).Result()
		rc.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
		live++
	}
	return live > 0
}

// waitReplicas waits until every node sees three masters serving slots,
// each with a replica, and every replica's link to its master is up.
func (c *cluster) waitReplicas(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !c.agreed() || c.replicasUp() < 3 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of 3 replicas in sync after %v", c.replicasUp(), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (c *cluster) agreed() bool {
	for _, s := range c.nodes {
		ns, err := s.view()
		if err != nil {
			return false
		}
		masters, replicas := 0, 0
		for _, n := range ns {
			if n.isMaster && len(n.slots) > 0 {
				masters++
			} else if !n.isMaster && n.master != "-" {
				replicas++
			}
		}
		if masters != 3 || replicas != 3 {
			return false
		}
	}
	return true
}

func (c *cluster) replicasUp() int {
	up := 0
	for _, s := range c.nodes {
		rc := s.direct()
		info, err := rc.Info(context.Background(), "replication").Result()
		rc.Close()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") {
			up++
		}
	}
	return up
}

// cliRun runs redis-cli with args and returns its output.
func (c *cluster) cliRun(args ...string) (string, error) {
	out, err := exec.Command(c.cli, args...).CombinedOutput()
	return string(out), err
}
