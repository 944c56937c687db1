package presenceredis

import "syscall"

// childAttr makes the kernel kill a redis-server child with SIGKILL when
// the test process dies, so that a test binary that panics or times out
// leaves no server behind.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
