package main_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestNoFaultInjectionFlags: the production binary takes no hidden
// --testing.* flag; tests inject their faults from outside the process.
func TestNoFaultInjectionFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, boxfleet(t), "serve", "--testing.commit-delay", "1ms", "--data.dir", dir,
		"--web.listen-address", testsupport.FreeAddr(t), "--prometheus.url", "http://127.0.0.1:1").CombinedOutput()
	if ctx.Err() != nil || err == nil || !strings.Contains(string(out), "unknown long flag '--testing.commit-delay'") {
		t.Fatalf("serve --testing.commit-delay was not refused (%v, %v): %s", ctx.Err(), err, out)
	}
}
