package actions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/actions"
	"github.com/boxfleet/boxfleet/controller/store"
)

var ctx = context.Background()

// fixture is one Actor behind a real HTTP server, on one store.
type fixture struct {
	t     *testing.T
	st    *store.Store
	actor *actions.Actor
	reg   *prometheus.Registry
	url   string
}

func newFixture(t *testing.T, st *store.Store, prom promv1.API, h actions.Health, cfg actions.Config) *fixture {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := prometheus.NewRegistry()
	a := actions.New(st, prom, h, log, cfg, reg)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &fixture{t: t, st: st, actor: a, reg: reg, url: srv.URL}
}

// payload is Alertmanager's webhook body, version 4, as its webhook
// notifier marshals it.
type payload struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

type summary struct {
	Alerts  int            `json:"alerts"`
	Results map[string]int `json:"results"`
}

// post delivers alerts in one notification and returns the status code and
// the decoded summary.
func (f *fixture) post(alerts ...template.Alert) (int, summary) {
	f.t.Helper()
	status := "resolved"
	for _, a := range alerts {
		if a.Status == "firing" {
			status = "firing"
		}
	}
	body, err := json.Marshal(payload{
		Data: &template.Data{
			Receiver: "boxfleet", Status: status, Alerts: alerts,
			GroupLabels: template.KV{}, CommonLabels: template.KV{}, CommonAnnotations: template.KV{},
			ExternalURL: "http://alertmanager.test:9093",
		},
		Version: "4", GroupKey: `{}:{alertname="test"}`,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	code, raw := f.postRaw(body)
	var sum summary
	if code == http.StatusOK || code == http.StatusServiceUnavailable {
		if err := json.Unmarshal(raw, &sum); err != nil {
			f.t.Fatalf("summary %q: %v", raw, err)
		}
	}
	return code, sum
}

func (f *fixture) postRaw(body []byte) (int, []byte) {
	f.t.Helper()
	resp, err := http.Post(f.url, "application/json", bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// mustPost delivers alerts and fails unless the answer is want.
func (f *fixture) mustPost(want int, alerts ...template.Alert) summary {
	f.t.Helper()
	code, sum := f.post(alerts...)
	if code != want {
		f.t.Fatalf("webhook answered %d, want %d (%+v)", code, want, sum)
	}
	return sum
}

// metric returns the value of the counter name with exactly labels, or 0.
func (f *fixture) metric(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (f *fixture) wantMetric(name string, want float64, labels ...string) {
	f.t.Helper()
	if got := f.metric(name, labels...); got != want {
		f.t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// alert builds an alert as Alertmanager sends it: the fingerprint is the
// hash of the label set, and one episode keeps its startsAt.
func alert(status string, start time.Time, labels map[string]string) template.Alert {
	a := template.Alert{
		Status: status, Labels: template.KV(labels), Annotations: template.KV{"summary": "test"},
		StartsAt: start, GeneratorURL: "http://prometheus.test:9090/graph",
		Fingerprint: model.LabelSet(toLabelSet(labels)).Fingerprint().String(),
	}
	if status == "resolved" {
		a.EndsAt = start.Add(time.Minute)
	}
	return a
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

func suspendAlert(status, user string, start time.Time) template.Alert {
	return alert(status, start, map[string]string{
		"alertname": "UserOverQuota", "severity": "warning", actions.ActionLabel: actions.SuspendUser, "user": user,
	})
}

func drainAlert(status, node string, start time.Time) template.Alert {
	return alert(status, start, map[string]string{
		"alertname": "NodeDown", "severity": "critical", actions.ActionLabel: actions.DrainNode, "node": node,
	})
}

// keyOf is the store key an alert's handling is recorded under.
func keyOf(a template.Alert) store.AlertKey {
	k := store.AlertKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt.Unix(), Action: a.Labels[actions.ActionLabel]}
	if k.Action == actions.DrainNode {
		k.Target = a.Labels["node"]
	} else {
		k.Target = a.Labels["user"]
	}
	return k
}

// wantReleased checks that a refused or failed alert left no claim, so that
// Alertmanager's next delivery is handled afresh.
func (f *fixture) wantReleased(a template.Alert) {
	f.t.Helper()
	if rec, err := f.st.GetAlertAction(ctx, keyOf(a)); !errors.Is(err, store.ErrNotFound) {
		f.t.Errorf("alert on %s: claim kept after refusal: %+v, %v", keyOf(a).Target, rec, err)
	}
}

func (f *fixture) addUser(name string) {
	f.t.Helper()
	if _, err := f.st.CreateUser(ctx, "admin:test", name, "", store.UserSpec{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) user(name string) *store.User {
	f.t.Helper()
	u, err := f.st.GetUser(ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

func (f *fixture) wantStatus(name, status string) *store.User {
	f.t.Helper()
	u := f.user(name)
	if u.Status != status {
		f.t.Fatalf("user %s: status %q (reason %q), want %q", name, u.Status, u.StatusReason, status)
	}
	return u
}

// events counts audit events of action on the named object.
func (f *fixture) events(typ, name, action string) int {
	f.t.Helper()
	evs, err := f.st.Events(ctx, store.EventFilter{ObjectType: typ, ObjectName: name, Action: action, Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(evs)
}

func (f *fixture) addNode(name, group string) {
	f.t.Helper()
	if _, _, err := f.st.CreateNode(ctx, "admin:test", name, map[string]string{"group": group}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) node(name string) *store.Node {
	f.t.Helper()
	n, err := f.st.GetNode(ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) wantDrained(name string, drained bool) *store.Node {
	f.t.Helper()
	n := f.node(name)
	if n.Drained != drained {
		f.t.Fatalf("node %s: drained %v (by %q), want %v", name, n.Drained, n.DrainedBy, drained)
	}
	return n
}

// scores is a Health whose scores the test sets.
type scores struct {
	mu sync.Mutex
	m  map[string]float64
}

func (s *scores) set(node string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]float64{}
	}
	s.m[node] = v
}

func (s *scores) Score(node string) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[node]
	return v, ok
}
