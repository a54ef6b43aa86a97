package testsupport

// The real programs of integration tests are run and waited on so that a
// failure explains itself: every program logs to a file whose tail the test
// prints when it fails, and a wait that times out prints the state it was
// waiting on, not only its name.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TailBytes is how much of each program's log a failed test prints.
const TailBytes = 6000

// Proc is one running program.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // the file its stdout and stderr go to
}

// Start runs bin with args, its output in dir/name.log. The program is
// stopped when the test ends; if the test failed, the tail of its log is
// printed then.
func Start(t testing.TB, dir, name, bin string, args ...string) *Proc {
	t.Helper()
	path := filepath.Join(dir, name+".log")
	log, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: path}
	t.Cleanup(func() {
		p.Stop()
		log.Close()
		if t.Failed() {
			t.Logf("--- %s (%s) log tail ---\n%s", name, dir, Tail(path, TailBytes))
		}
	})
	return p
}

// Stop ends the program: SIGTERM, then SIGKILL after five seconds.
func (p *Proc) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

// Kill ends the program with SIGKILL, as a crash would.
func (p *Proc) Kill() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Kill()
	_ = p.Cmd.Wait()
}

// Tail returns the last n bytes of a file, starting at a line.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// Until polls ok every 100 ms until it holds and returns how long that
// took. On timeout the test fails with what it waited for and, from each
// state function, the state it saw last: the next flake then says where
// it stopped.
func Until(t testing.TB, what string, timeout time.Duration, ok func() bool, state ...func() string) time.Duration {
	t.Helper()
	begin := time.Now()
	for !ok() {
		if time.Since(begin) > timeout {
			var b strings.Builder
			for _, s := range state {
				fmt.Fprintf(&b, "\n  %s", strings.ReplaceAll(s(), "\n", "\n  "))
			}
			t.Fatalf("timed out after %s waiting for %s; last state:%s", timeout, what, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(begin)
}
