package actions_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// FuzzWebhook sends arbitrary bodies to the Alertmanager webhook. The
// answer is 200, a temporary 503, or a clear 400/413; never a 500 or a
// panic, and a refused body changes nothing in the store. Prometheus is
// unreachable, so drains answer 503 rather than act on a guess.
func FuzzWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"receiver":"boxfleet","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"UserOverQuota","boxfleet_action":"suspend_user","user":"alice"},"annotations":{},"startsAt":"2026-01-02T03:04:05Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"0a1b2c3d4e5f6071"}],"groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","version":"4","groupKey":"{}","truncatedAlerts":0}`,
		`{"status":"resolved","alerts":[{"status":"resolved","labels":{"boxfleet_action":"suspend_user","user":"alice"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"0a1b2c3d4e5f6071"}],"version":"4"}`,
		`{"status":"firing","alerts":[{"status":"firing","labels":{"boxfleet_action":"drain_node","node":"n1"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"ff"}],"version":"4"}`,
		`{"status":"firing","alerts":[{"status":"firing","labels":{"boxfleet_action":"suspend_user","user":"\u0000'; DROP TABLE users;--"},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"x"}],"version":"4"}`,
		`{"status":"firing","alerts":[{"status":"pending","labels":{},"startsAt":"2026-01-02T03:04:05Z","fingerprint":"x"}],"version":"4"}`,
		`{"alerts":[{"status":"firing","labels":{"boxfleet_action":"suspend_user","user":"alice"},"startsAt":"9999-12-31T23:59:59Z","fingerprint":"y"}],"version":"4","truncatedAlerts":18446744073709551615}`,
		`{"version":"3"}`, `{"version":"4"}`, `null`, `[]`, `{"version":"4","alerts":null}`, ``, `{`, `{"version":"4"}{"version":"4"}`,
	} {
		f.Add([]byte(seed))
	}
	st := storetest.SQLite(f)
	ctx := context.Background()
	if _, err := st.CreateUser(ctx, "test", "alice", "", store.UserSpec{}); err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, _, err := st.CreateNode(ctx, "test", n, nil); err != nil {
			f.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	a := actions.New(st, deadProm(f), nil, log, actions.Config{MaxDrainedRatio: 0.5}, prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := storetest.Snapshot(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/alerts", bytes.NewReader(body)))
		switch w.Code {
		case http.StatusOK, http.StatusServiceUnavailable:
			return
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if !bytes.Contains(w.Body.Bytes(), []byte(`"bad_request"`)) {
				t.Errorf("%d without an error code: %s", w.Code, w.Body)
			}
		default:
			t.Fatalf("answered %d: %s", w.Code, w.Body)
		}
		after, err := storetest.Snapshot(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("a refused body (%d) changed the store:\nbefore %s\nafter  %s", w.Code, before, after)
		}
	})
}
