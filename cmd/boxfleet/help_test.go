package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestServeHelpShowsServeFlags: serve's help lists what serve uses, the
// shared --admin.token-file among them, and not the admin commands' --url
// and -o; the admin commands' help lists all three.
func TestServeHelpShowsServeFlags(t *testing.T) {
	bin := boxfleet(t)
	help := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("boxfleet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	url, output, token := regexp.MustCompile(`(?m)^\s+--url=`), regexp.MustCompile(`(?m)^\s+-o, --output=`), regexp.MustCompile(`(?m)^\s+--admin\.token-file=`)
	for _, args := range [][]string{{"serve", "--help"}, {"help", "serve"}} {
		out := help(args...)
		if url.MatchString(out) || output.MatchString(out) || !token.MatchString(out) || !strings.Contains(out, "--data.dir") {
			t.Errorf("boxfleet %s shows the admin commands' flags, or not serve's:\n%s", strings.Join(args, " "), out)
		}
	}
	for _, args := range [][]string{{"user", "--help"}, {"node", "drain", "--help"}} {
		out := help(args...)
		if !url.MatchString(out) || !output.MatchString(out) || !token.MatchString(out) {
			t.Errorf("boxfleet %s lacks --url, -o or --admin.token-file:\n%s", strings.Join(args, " "), out)
		}
		if strings.Contains(out, "--token-file") && !strings.Contains(out, "--admin.token-file") {
			t.Errorf("boxfleet %s shows the old --token-file", strings.Join(args, " "))
		}
	}
}

// TestAdminTokenFileFlag: the admin commands read the token from
// --admin.token-file, and still from the old --token-file, before or after
// the command.
func TestAdminTokenFileFlag(t *testing.T) {
	c := newController(t, t.TempDir(), "")
	c.start()
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("this-is-not-the-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--url", c.url(), "--admin.token-file", c.tokenFile(), "user", "list"},
		{"user", "list", "--url", c.url(), "--admin.token-file", c.tokenFile()},
		{"--url", c.url(), "--token-file", c.tokenFile(), "user", "list"},
		{"user", "list", "--url", c.url(), "--token-file", c.tokenFile(), "-o", "json"},
	} {
		cmd := exec.Command(c.bin, args...)
		cmd.Env = cleanEnv("BOXFLEET_TOKEN_FILE=" + wrong)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("boxfleet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
