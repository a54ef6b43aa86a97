package actions_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

func TestWebhookDecoding(t *testing.T) {
	f := newFixture(t, storetest.SQLite(t), nil, nil, actions.Config{})
	f.addUser("alice")
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good := suspendAlert("firing", "alice", start)

	// What Alertmanager's webhook notifier sends, written out by hand so
	// that the field names are checked against the format, not against the
	// Go types the controller decodes with.
	literal := `{"receiver":"boxfleet","status":"resolved","alerts":[{"status":"resolved",
	  "labels":{"alertname":"UserOverQuota","boxfleet_action":"suspend_user","user":"nobody"},
	  "annotations":{},"startsAt":"2026-01-02T03:04:05.123Z","endsAt":"2026-01-02T03:09:05Z",
	  "generatorURL":"http://p/graph","fingerprint":"0a1b2c3d4e5f6071"}],
	  "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am",
	  "version":"4","groupKey":"{}:{alertname=\"UserOverQuota\"}","truncatedAlerts":0}`
	if code, body := f.postRaw([]byte(literal)); code != http.StatusOK {
		t.Fatalf("v4 payload: %d %s", code, body)
	}

	mangle := func(fn func(m map[string]any, al map[string]any)) []byte {
		raw, _ := json.Marshal(payload{Data: &template.Data{Status: "firing", Alerts: template.Alerts{good}}, Version: "4"})
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		fn(m, m["alerts"].([]any)[0].(map[string]any))
		out, _ := json.Marshal(m)
		return out
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"malformed JSON", []byte(`{"version":"4","alerts":[`)},
		{"not an object", []byte(`["version","4"]`)},
		{"empty object", []byte(`{}`)},
		{"missing version", mangle(func(m, _ map[string]any) { delete(m, "version") })},
		{"version 3", mangle(func(m, _ map[string]any) { m["version"] = "3" })},
		{"version as a number", mangle(func(m, _ map[string]any) { m["version"] = 4 })},
		{"bad status", mangle(func(_, al map[string]any) { al["status"] = "pending" })},
		{"missing fingerprint", mangle(func(_, al map[string]any) { delete(al, "fingerprint") })},
		{"missing startsAt", mangle(func(_, al map[string]any) { delete(al, "startsAt") })},
		{"startsAt not a time", mangle(func(_, al map[string]any) { al["startsAt"] = "yesterday" })},
		{"labels not a map", mangle(func(_, al map[string]any) { al["labels"] = []string{"user"} })},
	} {
		code, body := f.postRaw(tc.body)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, code, body)
		}
	}

	// A valid alert beside an invalid one in the same notification must
	// not act: the whole payload is rejected before anything is done.
	code, body := f.postRaw(mangle(func(m, al map[string]any) {
		bad := map[string]any{}
		maps.Copy(bad, al)
		bad["status"] = "unknown"
		m["alerts"] = []any{al, bad}
	}))
	if code != http.StatusBadRequest {
		t.Fatalf("half-valid payload: %d %s", code, body)
	}
	f.wantStatus("alice", "active")

	// Over 4 MiB: 413 without reading it all.
	huge := append([]byte(`{"version":"4","receiver":"`), bytes.Repeat([]byte("x"), 5<<20)...)
	huge = append(huge, `"}`...)
	if code, body := f.postRaw(huge); code != http.StatusRequestEntityTooLarge {
		t.Errorf("5 MiB payload: %d %.200s, want 413", code, body)
	}
	// Just under the limit is fine: real notifications with many alerts are
	// large, and the limit must not cut them.
	big := mangle(func(m, _ map[string]any) { m["receiver"] = strings.Repeat("x", 4<<20-4096) })
	if code, body := f.postRaw(big); code != http.StatusOK {
		t.Errorf("payload just under 4 MiB: %d %.200s, want 200", code, body)
	}
	f.wantStatus("alice", "disabled")
}
