package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/clashapi/clashapitest"
	"github.com/boxfleet/boxfleet/exporter/meter"
)

// flushServer serves the exporter's routes over a meter reading a fake
// Clash API and writing its state to statePath.
func flushServer(t *testing.T, statePath string) (*httptest.Server, *clashapitest.Server) {
	t.Helper()
	clash := clashapitest.NewServer(clashapitest.Body(10, 3))
	t.Cleanup(clash.Close)
	client, err := clashapi.NewClient(clash.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := meter.New(meter.Config{Clash: client, StatePath: statePath, Log: log})
	srv := httptest.NewServer(routes(prometheus.NewRegistry(), options{metricsPath: "/metrics"}, m, log))
	t.Cleanup(srv.Close)
	return srv, clash
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// POST /-/flush answers once sing-box was polled and the state written.
func TestFlushEndpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	srv, clash := flushServer(t, path)
	code, body := post(t, srv.URL+"/-/flush")
	if code != http.StatusOK || body != "Flushed\n" {
		t.Fatalf("POST /-/flush: %d %q, want 200 \"Flushed\\n\"", code, body)
	}
	if n := clash.Polls.Load(); n != 1 {
		t.Errorf("the flush polled sing-box %d times, want 1", n)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the flush answered before the state file was written: %v", err)
	}
}

// Only POST flushes: a crawler or a browser following a link must not.
func TestFlushEndpointWantsPost(t *testing.T) {
	srv, clash := flushServer(t, filepath.Join(t.TempDir(), "state.json"))
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(method, srv.URL+"/-/flush", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s /-/flush: %d, Allow %q; want 405, Allow POST", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if n := clash.Polls.Load(); n != 0 {
		t.Errorf("sing-box polled %d times without a POST", n)
	}
}

// A flush that could not poll or could not write says so: the caller (an
// ExecStop) logs it, and the operator knows the bytes since the last poll
// may be lost.
func TestFlushEndpointFailures(t *testing.T) {
	t.Run("sing-box down", func(t *testing.T) {
		srv, clash := flushServer(t, filepath.Join(t.TempDir(), "state.json"))
		clash.Close()
		code, body := post(t, srv.URL+"/-/flush")
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "Flush failed: ") {
			t.Errorf("got %d %q, want 503 with the error", code, body)
		}
	})
	t.Run("state not writable", func(t *testing.T) {
		srv, _ := flushServer(t, filepath.Join(t.TempDir(), "missing", "state.json"))
		code, body := post(t, srv.URL+"/-/flush")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "missing") {
			t.Errorf("got %d %q, want 503 naming the state file", code, body)
		}
	})
}

// A device key too short to be a secret stops the exporter at start, and
// the error names the problem without repeating the key.
func TestShortDeviceKeyRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")
	if err := os.WriteFile(path, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	err := run(log, options{deviceKeyFile: path, clashURL: "http://127.0.0.1:1"})
	if err == nil {
		t.Fatal("the exporter started with a 7-byte device key")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error shows the key: %v", err)
	}
}
