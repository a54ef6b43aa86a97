package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type openAPIOp struct {
	Security  *[]map[string][]string `json:"security"`
	Roles     map[string]string      `json:"x-roles"`
	Responses map[string]any         `json:"responses"`
}

func TestOpenAPIMatchesRouter(t *testing.T) {
	e := sqliteEnv(t)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r := e.admin("GET", "/api/v1/openapi.json", nil, http.StatusOK, &doc)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}

	documented := map[string]openAPIOp{}
	param := regexp.MustCompile(`\{(\w+)\}`)
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op openAPIOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
		// Every {parameter} of a path is declared.
		var params []struct{ Name, In string }
		if p, ok := item["parameters"]; ok {
			if err := json.Unmarshal(p, &params); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for _, m := range param.FindAllStringSubmatch(path, -1) {
			if !slices.Contains(params, struct{ Name, In string }{m[1], "path"}) {
				t.Errorf("%s does not declare its path parameter %s", path, m[1])
			}
		}
	}
	routed := map[string]route{}
	for _, rt := range routes(t, e) {
		routed[rt.method+" "+rt.template] = rt
	}
	for k := range routed {
		if _, ok := documented[k]; !ok {
			t.Errorf("route %s is not in the OpenAPI document", k)
		}
	}
	for k := range documented {
		if _, ok := routed[k]; !ok {
			t.Errorf("the OpenAPI document has %s, which no route serves", k)
		}
	}

	// The document's security must say what the auth matrix enforces.
	for k, op := range documented {
		rt, ok := routed[k]
		if !ok {
			continue
		}
		var schemes []string
		if op.Security != nil {
			for _, s := range *op.Security {
				for name := range s {
					schemes = append(schemes, name)
				}
			}
		}
		want := map[string][]string{"public": nil, "role": {"adminToken", "sessionCookie"}, "node": {"nodeToken"}}[access(rt)]
		if op.Security == nil || !slices.Equal(schemes, want) {
			t.Errorf("%s: security %v, want %v", k, schemes, want)
		}
		// x-roles documents each role's grant; it must be the contract
		// the auth matrix enforces.
		if access(rt) == "role" {
			words := map[byte]string{'a': "allow", 'd': "deny", 'o': "own"}
			for _, role := range roleOrder {
				if got, want := op.Roles[role], words[grant(rt, role)]; got != want {
					t.Errorf("%s: x-roles.%s = %q, want %q", k, role, got, want)
				}
			}
		} else if len(op.Roles) > 0 {
			t.Errorf("%s: x-roles on a %s route", k, access(rt))
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s documents no responses", k)
		}
	}
}

func TestMetrics(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("alice", map[string]any{"traffic_limit_bytes": 1 << 30, "expire_at": "2030-01-01T00:00:00Z", "device_limit": 2})
		e.createUser("bob", nil)
		e.admin("POST", "/api/v1/users/bob/suspend", nil, http.StatusOK, nil)
		e.createNode("n1", nil)
		e.call("GET", "/api/v1/users/nobody", adminToken, nil)
		e.call("GET", "/api/v1/users", "", nil)

		r := e.admin("GET", "/metrics", nil, http.StatusOK, nil)
		// Legacy names: Prometheus rules and dashboards quote none of them.
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(string(r.body)))
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		find := func(name string, labels map[string]string) (float64, bool) {
			f, ok := fams[name]
			if !ok {
				return 0, false
			}
		next:
			for _, m := range f.Metric {
				got := map[string]string{}
				for _, l := range m.Label {
					got[l.GetName()] = l.GetValue()
				}
				for k, v := range labels {
					if got[k] != v {
						continue next
					}
				}
				switch {
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount()), true
				}
			}
			return 0, false
		}
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"boxfleet_user_traffic_limit_bytes", map[string]string{"user": "alice"}, 1 << 30},
			{"boxfleet_user_traffic_used_bytes", map[string]string{"user": "alice"}, 0},
			{"boxfleet_user_expiry_timestamp_seconds", map[string]string{"user": "alice"}, 1893456000},
			{"boxfleet_user_device_limit", map[string]string{"user": "alice"}, 2},
			{"boxfleet_user_status", map[string]string{"user": "bob", "status": "disabled"}, 1},
			{"boxfleet_users", map[string]string{"status": "active"}, 1},
			{"boxfleet_node_drained", map[string]string{"node": "n1"}, 0},
			{"boxfleet_http_requests_total", map[string]string{"handler": "users.get", "code": "404"}, 1},
			{"boxfleet_http_requests_total", map[string]string{"handler": "users.list", "code": "401"}, 1},
			{"boxfleet_http_requests_total", map[string]string{"handler": "users.create", "code": "201"}, 2},
			{"boxfleet_http_request_duration_seconds", map[string]string{"handler": "users.create"}, 2},
		} {
			got, ok := find(c.name, c.labels)
			if !ok || got != c.want {
				t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
			}
		}
		for _, absent := range []struct {
			name string
			user string
		}{{"boxfleet_user_traffic_limit_bytes", "bob"}, {"boxfleet_user_expiry_timestamp_seconds", "bob"}, {"boxfleet_user_device_limit", "bob"}} {
			if _, ok := find(absent.name, map[string]string{"user": absent.user}); ok {
				t.Errorf("%s present for an unlimited user", absent.name)
			}
		}
		// Handler labels are route names, never raw paths: a scanner
		// walking random URLs must not grow the series count.
		for _, m := range fams["boxfleet_http_requests_total"].Metric {
			for _, l := range m.Label {
				if l.GetName() == "handler" && strings.Contains(l.GetValue(), "/") {
					t.Errorf("handler label %q is a path", l.GetValue())
				}
			}
		}
	})
}
