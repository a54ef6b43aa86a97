package agent

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// processAge must tell a process just started from one that has run for
// a while: the reload waits on it.
func TestProcessAge(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	young, ok := processAge(cmd.Process.Pid)
	if !ok || young < 0 || young > 2*time.Second {
		t.Errorf("a process just started: age %v (ok %v), want under 2 s", young, ok)
	}
	time.Sleep(1200 * time.Millisecond)
	older, ok := processAge(cmd.Process.Pid)
	if !ok || older < time.Second || older > young+5*time.Second {
		t.Errorf("1.2 s later: age %v (ok %v), want 1 s or more (it was %v)", older, ok, young)
	}
	if _, ok := processAge(1 << 30); ok {
		t.Error("a pid that does not exist has an age")
	}
	if self, ok := processAge(os.Getpid()); !ok || self <= 0 {
		t.Errorf("this test's own process: age %v (ok %v)", self, ok)
	}
}
