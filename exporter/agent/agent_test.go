package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

func TestRedactHidesEverySecret(t *testing.T) {
	u := sbconfig.User{Name: "alice", Credentials: sbconfig.NewCredentials()}
	msg := "bad uuid " + u.UUID + ", password " + u.Password + ", keys " + u.SSKey16 + " " + u.SSKey32
	got := redact(msg, []sbconfig.User{u})
	for _, s := range []string{u.UUID, u.Password, u.SSKey16, u.SSKey32} {
		if strings.Contains(got, s) {
			t.Errorf("secret %q left in %q", s, got)
		}
	}
	if !strings.HasPrefix(got, "bad uuid <secret>") {
		t.Errorf("message mangled: %q", got)
	}
}

func TestControllerClient(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer tok-1":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"forbidden","message":"token of another node"}}`))
		case r.URL.Path != "/base/api/v1/nodes/a%2Fb/users" && r.URL.RawPath != "/base/api/v1/nodes/a%2Fb/users":
			http.NotFound(w, r)
		case r.Header.Get("If-None-Match") == `"e1"`:
			w.WriteHeader(http.StatusNotModified)
		default:
			if r.URL.Query().Get("wait") != "60" {
				t.Errorf("wait = %q", r.URL.Query().Get("wait"))
			}
			w.Header().Set("ETag", `"e1"`)
			w.Write([]byte(`{"revision":7,"users":[{"name":"alice","uuid":"u"}]}`))
		}
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL + "/base")
	c := &controller{base: base, node: "a/b", tokenFile: tokenFile, http: srv.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	set, etag, err := c.users(ctx, "", 60)
	if err != nil || etag != `"e1"` || set.Revision != 7 || set.Users[0].UUID != "u" {
		t.Fatalf("users: %+v %q %v", set, etag, err)
	}
	if _, _, err := c.users(ctx, `"e1"`, 60); !errors.Is(err, errNotModified) {
		t.Errorf("with the current ETag: %v, want not modified", err)
	}
	os.WriteFile(tokenFile, []byte("tok-2"), 0o600) // rotated: read again
	_, _, err = c.users(ctx, "", 60)
	if err == nil || !strings.Contains(err.Error(), "token of another node") || strings.Contains(err.Error(), "tok-2") {
		t.Errorf("error %v: want the controller's message and no token", err)
	}
}

func TestBackoffStaysWithinBounds(t *testing.T) {
	b := backoff{base: time.Second, max: 30 * time.Second}
	for i := range 40 {
		d := b.next()
		want := min(time.Second<<min(i, 16), 30*time.Second)
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %s, want within [%s, %s]", i, d, want/2, want)
		}
	}
}
