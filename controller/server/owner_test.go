package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/boxfleet/boxfleet/controller/server"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// A password file left by an earlier database (here world-readable) is
// replaced with a fresh 0600 file, never reused; once an account exists,
// nothing is written.
func TestEnsureOwner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		path := filepath.Join(t.TempDir(), "admin.password")
		if err := os.WriteFile(path, []byte("stale-password-from-before\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		log, hook := logtest.NewNullLogger()
		if err := server.EnsureOwner(t.Context(), st, path, log); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pw := strings.TrimSpace(string(b))
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 || strings.Contains(pw, "stale") {
			t.Fatalf("password file: mode %v, content %q", fi.Mode().Perm(), pw)
		}
		login, err := st.AdminLogin(t.Context(), "admin")
		if err != nil || login.Role != store.RoleOwner || !store.CheckPassword(login.PasswordHash, pw) {
			t.Fatalf("owner account: %+v %v", login, err)
		}
		for _, e := range hook.AllEntries() {
			if s, _ := e.String(); strings.Contains(s, pw) {
				t.Errorf("the password is in the log: %s", s)
			}
		}
		// Second start: the account exists, the file stays as it is.
		if err := server.EnsureOwner(t.Context(), st, path, logrus.New()); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(path); string(again) != string(b) {
			t.Error("a second start rewrote the password file")
		}
	})
}
