package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// TestDrainGuard: a manual drain that would leave a group without an
// undrained healthy node is refused with the reason, unless forced, and a
// forced one is audited.
func TestDrainGuard(t *testing.T) {
	health := scores{"eu-1": 1, "eu-2": 0.8, "eu-3": 0, "us-1": 1}
	e := newEnvWith(t, storetest.SQLite(t), func(o *api.Options) { o.Health = health })
	for _, n := range []string{"eu-1", "eu-2", "eu-3"} {
		e.createNode(n, map[string]string{"group": "eu"})
	}
	e.createNode("us-1", map[string]string{"group": "us"})
	e.createNode("new", map[string]string{"group": "us"}) // no score yet

	e.admin("POST", "/api/v1/nodes/eu-1/drain", map[string]string{"reason": "disk"}, http.StatusOK, nil)
	// eu-3 scores 0: it is not what keeps the group up.
	e.admin("POST", "/api/v1/nodes/eu-3/drain", nil, http.StatusOK, nil)
	body := wantError(t, "last healthy node", e.call("POST", "/api/v1/nodes/eu-2/drain", adminToken, map[string]string{"reason": "x"}), http.StatusConflict, "conflict")
	if body.Field != "force" || !strings.Contains(body.Message, `would leave 0 undrained healthy node(s) in its group "eu"`) || !strings.Contains(body.Message, "force=true") {
		t.Errorf("refusal %+v: want the reason and how to override", body)
	}
	var n store.Node
	e.admin("GET", "/api/v1/nodes/eu-2", nil, http.StatusOK, &n)
	if n.Drained {
		t.Fatal("a refused drain drained the node")
	}
	wantError(t, "bad force", e.call("POST", "/api/v1/nodes/eu-2/drain?force=maybe", adminToken, nil), http.StatusBadRequest, "invalid")

	// Draining the only scored node of us is refused; the unscored one may go.
	wantError(t, "us-1", e.call("POST", "/api/v1/nodes/us-1/drain", adminToken, nil), http.StatusConflict, "conflict")
	e.admin("POST", "/api/v1/nodes/new/drain", nil, http.StatusOK, nil)
	// Undrain is never guarded, and an undrained healthy node lets eu-2 go.
	e.admin("POST", "/api/v1/nodes/eu-1/undrain", nil, http.StatusOK, nil)
	e.admin("POST", "/api/v1/nodes/eu-2/drain", nil, http.StatusOK, nil)

	e.admin("POST", "/api/v1/nodes/us-1/drain?force=true", map[string]string{"reason": "move"}, http.StatusOK, &n)
	if !n.Drained || n.DrainReason != "move" {
		t.Fatalf("forced drain: %+v", n)
	}
	var ev struct{ Events []*store.Event }
	e.admin("GET", "/api/v1/events?object=us-1", nil, http.StatusOK, &ev)
	var actions []string
	for _, x := range ev.Events {
		actions = append(actions, x.Action)
		if x.Action == "node.drain_forced" && (x.Actor != "admin:test" || !strings.Contains(x.Detail, `in its group "us"`)) {
			t.Errorf("forced-drain event %+v", x)
		}
	}
	if strings.Join(actions, ",") != "node.drain,node.drain_forced,node.create" {
		t.Errorf("us-1's events %v, want the drain, the override before it and the creation", actions)
	}
}

// TestDrainGuardMinimum: with a minimum of 2, a drain must leave two; a
// negative minimum turns the guard off.
func TestDrainGuardMinimum(t *testing.T) {
	health := scores{"a": 1, "b": 1, "c": 1}
	e := newEnvWith(t, storetest.SQLite(t), func(o *api.Options) { o.Health, o.DrainMinHealthy = health, 2 })
	off := newEnvWith(t, storetest.SQLite(t), func(o *api.Options) { o.Health, o.DrainMinHealthy = health, -1 })
	for _, x := range []*env{e, off} {
		for n := range health {
			x.createNode(n, nil)
		}
	}
	e.admin("POST", "/api/v1/nodes/a/drain", nil, http.StatusOK, nil)
	wantError(t, "below the minimum", e.call("POST", "/api/v1/nodes/b/drain", adminToken, nil), http.StatusConflict, "conflict")
	for _, n := range []string{"a", "b", "c"} {
		off.admin("POST", "/api/v1/nodes/"+n+"/drain", nil, http.StatusOK, nil)
	}
}
