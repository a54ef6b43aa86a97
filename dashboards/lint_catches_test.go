package dashboards

import (
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Each broken dashboard must be reported, with the reason; a lint that
// passes everything would make TestLint worthless.
func TestLintCatches(t *testing.T) {
	l := newLinter(t)
	node := queryVar("node", "Node", "label_values(singbox_up, node)", true)
	build := func(b *boardBuilder) board {
		d, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	one := func(p panel) board {
		return build(newDashboard("x", "x", "x", []*dashboard.QueryVariableBuilder{node}, section{"s", [][]panel{{p}}}))
	}
	// edit changes the first query of the panel after the row.
	edit := func(d board, f func(*prometheus.Dataquery)) {
		tg := d.Panels[1].Panel.Targets[0].(prometheus.Dataquery)
		f(&tg)
		d.Panels[1].Panel.Targets[0] = tg
	}
	fixed := "P1809F7CD0C75ACF3"
	good := `sum(rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`
	ts := func(expr, legend string) board {
		return one(timeseriesPanel("t", unitRate, "", q(expr, legend)))
	}
	for _, tc := range []struct {
		name string
		d    board
		want string
	}{
		{"bare counter", ts(`sum(singbox_traffic_bytes_total{node=~"$node"})`, ""), "read without rate"},
		{"histogram bucket without rate", ts(`histogram_quantile(0.9, sum by (le) (boxfleet_http_request_duration_seconds_bucket))`, ""), "read without rate"},
		{"rate of a gauge", ts(`sum(rate(singbox_connections{node=~"$node"}[5m]))`, ""), "rates are for counters"},
		{"misspelt metric", ts(`sum(rate(singbox_trafic_bytes_total{node=~"$node"}[5m]))`, ""), "not exposed"}, //nolint:misspell // the misspelling is the case
		{"label the metric lacks", ts(`sum(singbox_user_connections{node=~"$node",username="a"})`, ""), `label "username" does not exist`},
		{"parse error", ts(`sum(rate(singbox_traffic_bytes_total{node=~"$node"}[5m])`, ""), "does not parse"},
		{"undefined variable", ts(`sum(rate(singbox_traffic_bytes_total{node=~"$nodes"}[5m]))`, ""), "undefined variable $nodes"},
		{"variable outside a matcher", ts(`sum($node)`, ""), "not exposed"},
		{"legend label dropped by aggregation", ts(`sum by (direction) (rate(singbox_traffic_bytes_total{node=~"$node"}[5m]))`, "{{node}}"), "legend {{node}}"},
		{"node variable ignored", ts(`sum(rate(singbox_traffic_bytes_total[5m]))`, ""), "does not filter node"},
		{"unknown scrape job", ts(`sum(up{job="nope",node=~"$node"})`, ""), `job "nope"`},
		{"no unit", one(timeseriesPanel("t", "", "", q(good, ""))), "no unit"},
		{"unit typo", one(timeseriesPanel("t", "byte", "", q(good, ""))), `unit "byte"`},
		{"fixed datasource", func() board {
			d := ts(good, "")
			edit(d, func(dq *prometheus.Dataquery) { dq.Datasource.Uid = &fixed })
			return d
		}(), "datasource is not ${datasource}"},
		{"no datasource variable", func() board {
			d := ts(good, "")
			d.Templating.List = d.Templating.List[1:]
			return d
		}(), "no datasource variable"},
		{"no node variable", build(newDashboard("x", "x", "x", nil, section{"s", [][]panel{{timeseriesPanel("t", unitRate, "", q(good, ""))}}})), "neither a node"},
		{"variable on a missing label", func() board {
			d := ts(good, "")
			v, err := queryVar("node", "Node", "label_values(singbox_up, nod)", true).Build()
			if err != nil {
				t.Fatal(err)
			}
			d.Templating.List[1] = v
			return d
		}(), "label nod does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := render(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			problems := l.lint(b)
			if !strings.Contains(strings.Join(problems, "\n"), tc.want) {
				t.Errorf("want a problem containing %q, got %q", tc.want, problems)
			}
		})
	}
	d := ts(good, "{{direction}}")
	edit(d, func(dq *prometheus.Dataquery) {
		dq.Expr = `sum by (direction) (rate(singbox_traffic_bytes_total{node=~"$node"}[$__rate_interval]))`
	})
	b, _ := render(d)
	if problems := l.lint(b); len(problems) != 0 {
		t.Errorf("a correct dashboard was reported: %q", problems)
	}
}
