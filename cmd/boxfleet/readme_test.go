package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMECommands runs the README's CLI walkthroughs (users, plans and
// nodes; outgoing hooks) line by line against a real controller, so the
// README cannot show a command that does not work.
func TestREADMECommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	c := newController(t, t.TempDir(), "")
	c.start()
	defer c.stop()
	work := t.TempDir() // where relative paths in the commands (ops.secret) live
	if err := os.WriteFile(filepath.Join(work, "ops.secret"), []byte("a-shared-secret-of-32-characters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "ops.password"), []byte("a-password-for-ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, heading := range []string{"## Users, plans and the CLI", "### Outgoing hooks", "## Admin accounts, roles and sessions"} {
		for _, line := range shBlock(t, string(b), heading) {
			args := shellWords(line)
			if args[0] != "boxfleet" {
				t.Fatalf("not a boxfleet command: %s", line)
			}
			cmd := exec.Command(c.bin, args[1:]...)
			cmd.Dir = work
			cmd.Env = cleanEnv("BOXFLEET_URL="+c.url(), "BOXFLEET_TOKEN_FILE="+c.tokenFile())
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("README command %q: %v\n%s", line, err, out.String())
			}
			n++
		}
	}
	if n < 12 {
		t.Fatalf("only %d commands found", n)
	}
}

// shBlock returns the command lines of the first sh block after heading,
// without comments.
func shBlock(t *testing.T, readme, heading string) []string {
	t.Helper()
	i := strings.Index(readme, heading)
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(readme[i:])
	if block == nil {
		t.Fatalf("no sh block after %q", heading)
	}
	var lines []string
	for line := range strings.SplitSeq(block[1], "\n") {
		line = strings.TrimSpace(regexp.MustCompile(`\s+#.*$`).ReplaceAllString(line, ""))
		if line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// shellWords splits a line the way sh would for the simple quoting the
// README uses.
func shellWords(line string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"([^"]*)"|(\S+)`).FindAllStringSubmatch(line, -1) {
		if m[2] != "" {
			out = append(out, m[2])
		} else {
			out = append(out, m[1])
		}
	}
	return out
}
