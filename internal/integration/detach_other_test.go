//go:build !unix

package integration

import "os/exec"

// detach does nothing where there is no /dev/tty to write to.
func detach(*exec.Cmd) {}
