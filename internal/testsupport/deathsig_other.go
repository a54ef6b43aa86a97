//go:build !linux

package testsupport

import "os/exec"

// DieWithParent does nothing where the kernel has no parent-death signal.
func DieWithParent(cmd *exec.Cmd) {}
