package soak

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestScheduleReplays: a seed gives the same faults, in the same order,
// with the same holds, and every deck covers every fault on every target.
func TestScheduleReplays(t *testing.T) {
	a, b := schedule(42, 0, true), schedule(42, 0, true)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed drew two schedules")
	}
	if reflect.DeepEqual(a, schedule(43, 0, true)) {
		t.Fatal("two seeds drew the same schedule")
	}
	seen := map[string]bool{}
	for _, f := range a {
		seen[f.Kind+" "+strings.Split(f.Target, ":")[0]] = true
	}
	for _, want := range []string{"sigkill sing-box", "sigterm sing-box", "sigkill exporter", "sigterm exporter",
		"sigkill controller", "sigterm controller", "sigkill prometheus", "sigterm prometheus", "sigkill alertmanager",
		"sigterm alertmanager", "sigkill mariadb", "sigterm mariadb", "sigstop controller", "prom-unreachable prometheus",
		"state-readonly exporter", "state-full exporter", "outage sing-box", "cut node", "cut mariadb", "cut controller"} {
		if !seen[want] {
			t.Errorf("one deck lacks %q: %v", want, a)
		}
	}
	if len(a) != 26 {
		t.Errorf("one deck has %d faults, want 26", len(a))
	}
	// Without namespaces nothing can be cut.
	for _, f := range schedule(42, 0, false) {
		if f.Kind == "cut" {
			t.Errorf("a schedule without namespaces has %s", f)
		}
	}
	long := schedule(42, 30*time.Minute, true)
	if len(long) <= len(a) || len(long)%len(a) != 0 {
		t.Errorf("30 min drew %d faults, want whole decks of %d", len(long), len(a))
	}
}
