package testsupport

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's program when the test process
// dies, however it dies. A Prometheus orphaned by a killed test run went on
// scraping its dead targets' ephemeral ports every 15 s, and reached
// whatever later listened on one: an e2e origin counted such a scrape as a
// user's traffic. Call it before cmd.Start.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
