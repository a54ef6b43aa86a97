// Package testbin finds the real programs that integration tests run (sing-box,
// and later Prometheus and Alertmanager) and builds any that are missing with
// tools/build.sh, so a fresh checkout needs no manual set-up step.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RepoRoot is the directory that holds the root go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testbin: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Path returns the path of tool (a name tools/build.sh accepts), building it
// first when the cache does not have it. A failed build fails the test: the
// real program is the point of these tests, so there is no silent skip. The
// one skip is asked for: under -short (`make test-short`) every test that
// runs a real program is skipped, saying which.
func Path(t testing.TB, tool string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs the real %s: skipped under -short", tool)
	}
	root := RepoRoot(t)
	cmd := exec.Command("bash", filepath.Join(root, "tools", "build.sh"), tool)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testbin: building %s: %v", tool, err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("testbin: %s not found after build: %v", tool, err)
	}
	return path
}

// GoBuild compiles one of this module's commands into dir and returns the
// binary's path; integration tests run binaries, not functions, so that a
// restart is a real process restart.
func GoBuild(t testing.TB, pkg, dir string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testbin: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
