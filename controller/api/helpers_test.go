package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/collector"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/subscribe"
)

// adminToken is registered in every test store; tests that need a second
// admin register their own.
const adminToken = "test-admin-token-0123456789abcdef"

// env is one API served over real HTTP on one store.
type env struct {
	t     *testing.T
	api   *api.API
	store *store.Store
	url   string
	reg   *prometheus.Registry
	logs  *bytes.Buffer
}

func newEnv(t *testing.T, s *store.Store) *env { return newEnvWith(t, s, nil) }

// newEnvWith lets a test set API options (trusted proxies, clocks) before
// the API is built.
func newEnvWith(t *testing.T, s *store.Store, opt func(*api.Options)) *env {
	t.Helper()
	if err := s.EnsureAdminToken(context.Background(), "test", adminToken); err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	reg := prometheus.NewRegistry()
	// The collector is what `boxfleet serve` registers beside the API; with
	// it /metrics here shows what Prometheus would scrape.
	reg.MustRegister(&collector.Collector{Store: s, Log: log, Timeout: 5 * time.Second})
	renderer, err := subscribe.New("")
	if err != nil {
		t.Fatal(err)
	}
	o := api.Options{Store: s, Log: log, Registry: reg, Sub: &api.SubOptions{Renderer: renderer, MissesPerMinute: 10}}
	if opt != nil {
		opt(&o)
	}
	a := api.New(o)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &env{t: t, api: a, store: s, url: srv.URL, reg: reg, logs: logs}
}

// eachEnv runs fn on SQLite and, when a DSN is given, on MySQL.
func eachEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	storetest.Each(t, func(t *testing.T, s *store.Store) { fn(t, newEnv(t, s)) })
}

// sqliteEnv is for tests where the back end makes no difference (routing,
// decoding, auth order).
func sqliteEnv(t *testing.T) *env { return newEnv(t, storetest.SQLite(t)) }

type response struct {
	code   int
	header http.Header
	body   []byte
}

// call sends a request. body is sent as is when it is a string or []byte and
// JSON-encoded otherwise; tok "" sends no Authorization header.
func (e *env) call(method, path, tok string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: raw}
}

// admin calls with the admin token and fails the test unless the answer has
// status want; it decodes a JSON answer into out when out is not nil.
func (e *env) admin(method, path string, body any, want int, out any) response {
	e.t.Helper()
	r := e.call(method, path, adminToken, body)
	if r.code != want {
		e.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.code, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, r.body, err)
		}
	}
	return r
}

type apiErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

// wantError checks the status and that the body is the one error shape:
// JSON {"error":{"code","message"[,"field"]}} and nothing else.
func wantError(t *testing.T, what string, r response, status int, code string) apiErr {
	t.Helper()
	if r.code != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.code, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var body struct {
		Error apiErr `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("%s: error body %q is not the error shape: %v", what, r.body, err)
	}
	if body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("%s: error body %s lacks code or message", what, r.body)
	}
	if code != "" && body.Error.Code != code {
		t.Errorf("%s: error code %q, want %q (%s)", what, body.Error.Code, code, body.Error.Message)
	}
	return body.Error
}

// createNode makes a node through the API and returns its token.
func (e *env) createNode(name string, labels map[string]string) string {
	e.t.Helper()
	var out struct {
		Name  string `json:"name"`
		Token string `json:"token"`
	}
	e.admin("POST", "/api/v1/nodes", map[string]any{"name": name, "labels": labels}, http.StatusCreated, &out)
	if out.Name != name || len(out.Token) < 22 {
		e.t.Fatalf("created node %q with token %q", out.Name, out.Token)
	}
	return out.Token
}

func (e *env) createUser(name string, fields map[string]any) *store.User {
	e.t.Helper()
	body := map[string]any{"name": name}
	maps.Copy(body, fields)
	var u store.User
	e.admin("POST", "/api/v1/users", body, http.StatusCreated, &u)
	return &u
}

// user calls an endpoint that answers a user and decodes it into a fresh
// value: decoding into a reused one would keep fields the answer omits.
func (e *env) user(method, path string, body any) store.User {
	e.t.Helper()
	var u store.User
	e.admin(method, path, body, http.StatusOK, &u)
	return u
}
