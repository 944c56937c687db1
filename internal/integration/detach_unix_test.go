//go:build unix

package integration

import (
	"os/exec"
	"syscall"
)

// detach starts cmd in a session of its own, without a controlling
// terminal, so that an announcement goes to its standard error and not to
// the terminal of whoever runs the tests.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
