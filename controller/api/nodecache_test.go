package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
)

// TestNodeTokenRevocation: node tokens are answered from memory once
// seen, but a node deleted through this controller loses its token at
// once, and one deleted (or deleted and added again) through another
// controller within the node directory's lifetime.
func TestNodeTokenRevocation(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		const ttl = 300 * time.Millisecond
		api.SetNodeDirTTL(e.api, ttl)
		t1 := e.createNode("n1", nil)
		t2 := e.createNode("n2", nil)
		t3 := e.createNode("n3", nil)
		for name, tok := range map[string]string{"n1": t1, "n2": t2, "n3": t3} {
			if code, _ := e.nodeUsers(name, tok, "", ""); code != http.StatusOK {
				t.Fatalf("%s: %d", name, code)
			}
		}
		// Through this API: at once.
		e.admin("DELETE", "/api/v1/nodes/n1", nil, http.StatusNoContent, nil)
		if code, _ := e.nodeUsers("n1", t1, "", ""); code != http.StatusUnauthorized {
			t.Errorf("the token of a node deleted here: %d, want 401", code)
		}
		// Through another controller: once the directory is read anew.
		if err := e.store.DeleteNode(t.Context(), "test", "n2"); err != nil {
			t.Fatal(err)
		}
		if err := e.store.DeleteNode(t.Context(), "test", "n3"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // a new creation time for n3
		if _, _, err := e.store.CreateNode(t.Context(), "test", "n3", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * ttl)
		if code, _ := e.nodeUsers("n2", t2, "", ""); code != http.StatusUnauthorized {
			t.Errorf("the token of a node deleted elsewhere: %d, want 401", code)
		}
		if code, _ := e.nodeUsers("n3", t3, "", ""); code != http.StatusUnauthorized {
			t.Errorf("the old token of a node deleted and added again elsewhere: %d, want 401", code)
		}
	})
}

// TestNodeHeartbeatKeptInMemory: a registration that repeats the stored
// one is not written to the database at once, but this controller's node
// view shows it; a changed registration is written and audited.
func TestNodeHeartbeatKeptInMemory(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", map[string]string{"group": "eu"})
		if r := e.call("PUT", "/api/v1/nodes/n1", tok, registration()); r.code != http.StatusOK {
			t.Fatalf("register: %d %s", r.code, r.body)
		}
		stored, err := e.store.GetNode(t.Context(), "n1")
		if err != nil || stored.LastSeen == nil {
			t.Fatalf("stored: %+v %v", stored, err)
		}
		time.Sleep(1100 * time.Millisecond)
		var answer store.Node
		r := e.call("PUT", "/api/v1/nodes/n1", tok, registration())
		if err := json.Unmarshal(r.body, &answer); r.code != http.StatusOK || err != nil {
			t.Fatalf("heartbeat: %d %s", r.code, r.body)
		}
		again, err := e.store.GetNode(t.Context(), "n1")
		if err != nil || !again.LastSeen.Equal(*stored.LastSeen) || !again.UpdatedAt.Equal(stored.UpdatedAt) {
			t.Errorf("a heartbeat was written at once: last_seen %v, was %v", again.LastSeen, stored.LastSeen)
		}
		var shown store.Node
		e.admin("GET", "/api/v1/nodes/n1", nil, http.StatusOK, &shown)
		if shown.LastSeen == nil || !shown.LastSeen.After(*stored.LastSeen) || answer.LastSeen == nil || !answer.LastSeen.After(*stored.LastSeen) {
			t.Errorf("the heartbeat is not shown: view %v, answer %v, stored %v", shown.LastSeen, answer.LastSeen, stored.LastSeen)
		}
		if answer.Address != registration().Address || answer.Labels["group"] != "eu" {
			t.Errorf("heartbeat answer: %+v", answer)
		}

		changed := registration()
		changed.Version = "1.14.2"
		if r := e.call("PUT", "/api/v1/nodes/n1", tok, changed); r.code != http.StatusOK {
			t.Fatalf("changed registration: %d %s", r.code, r.body)
		}
		after, err := e.store.GetNode(t.Context(), "n1")
		if err != nil || after.Version != "1.14.2" || !after.LastSeen.After(*stored.LastSeen) {
			t.Errorf("a changed registration was not written: %+v %v", after, err)
		}
		evs, err := e.store.Events(t.Context(), store.EventFilter{Action: "node.register"})
		if err != nil || len(evs) != 2 {
			t.Errorf("%d node.register events for two changes and a heartbeat (%v)", len(evs), err)
		}
	})
}

// TestNodeGroupChangedElsewhere: a node whose group changes through
// another controller gets its new group's set when the revision moves,
// not when the node directory would have expired.
func TestNodeGroupChangedElsewhere(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", map[string]string{"group": "eu"})
		e.createUser("alice", map[string]any{"groups": []string{"eu"}})
		e.createUser("bob", map[string]any{"groups": []string{"us"}})
		_, set := e.nodeUsers("n1", tok, "", "")
		if !slices.Equal(set.names, []string{"alice"}) {
			t.Fatalf("eu set: %v", set.names)
		}
		go func() {
			time.Sleep(200 * time.Millisecond)
			reg := registration()
			reg.Labels = map[string]string{"group": "us"}
			if _, err := e.store.RegisterNode(t.Context(), "n1", reg); err != nil {
				t.Error(err)
			}
		}()
		start := time.Now()
		code, got := e.nodeUsers("n1", tok, set.etag, "?wait=10")
		if code != http.StatusOK || !slices.Equal(got.names, []string{"bob"}) || time.Since(start) > 5*time.Second {
			t.Fatalf("after the move to us: %d %v after %v", code, got.names, time.Since(start))
		}
	})
}

// TestNodeUsersSeeLocalChangesAtOnce: a change made through the polled
// controller wakes its long polls without waiting for the watcher's next
// read (a second apart).
func TestNodeUsersSeeLocalChangesAtOnce(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		tok := e.createNode("n1", nil)
		_, set := e.nodeUsers("n1", tok, "", "")
		for i := range 3 {
			name := []string{"u0", "u1", "u2"}[i]
			go func() {
				time.Sleep(300 * time.Millisecond)
				e.createUser(name, nil)
			}()
			start := time.Now()
			code, got := e.nodeUsers("n1", tok, set.etag, "?wait=10")
			took := time.Since(start) - 300*time.Millisecond
			if code != http.StatusOK || !slices.Contains(got.names, name) {
				t.Fatalf("%s: %d %v", name, code, got.names)
			}
			if took > 700*time.Millisecond {
				t.Errorf("%s reached the node %v after it was made, want at once", name, took)
			}
			set = got
		}
	})
}
