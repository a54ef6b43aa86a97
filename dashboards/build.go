package dashboards

// Grafana unit IDs the dashboards use; the lint test accepts only these, so a
// typo (which Grafana would silently render as a bare number) fails.
const (
	unitBytes   = "bytes"       // IEC: traffic volumes and quotas
	unitRate    = "Bps"         // bytes per second
	unitCount   = "short"       // connections, users, nodes
	unitNone    = "none"        // booleans and enums shown through mappings
	unitRatio   = "percentunit" // 0..1 shown as a percentage
	unitSeconds = "s"           // latencies and ages
	unitOps     = "ops"         // events per second
	unitReqs    = "reqps"       // HTTP requests per second
)

// Units is the set of unit IDs a panel may carry.
var Units = map[string]bool{
	unitBytes: true, unitRate: true, unitCount: true, unitNone: true,
	unitRatio: true, unitSeconds: true, unitOps: true, unitReqs: true,
}

// section is a titled row of panel lines; each line shares the grid's
// width evenly.
type section struct {
	title string
	lines [][]Panel
}

func newDashboard(uid, title, description string, vars []Variable, sections ...section) Dashboard {
	d := Dashboard{
		UID:           uid,
		Title:         title,
		Description:   description,
		Tags:          []string{"boxfleet"},
		Editable:      true,
		GraphTooltip:  1, // shared crosshair: a spike lines up across panels
		Refresh:       "30s",
		SchemaVersion: 39,
		Time:          TimeRange{From: "now-6h", To: "now"},
		Timezone:      "browser",
		Links: []Link{{
			Title: "boxfleet", Type: "dashboards", Tags: []string{"boxfleet"},
			AsDropdown: true, IncludeVars: true, KeepTime: true,
		}},
		Templating: Templating{List: append([]Variable{datasourceVar()}, vars...)},
	}
	d.Panels = layout(sections)
	return d
}

// layout assigns ids and grid positions, top to bottom.
func layout(sections []section) []Panel {
	var out []Panel
	id, y := 1, 0
	for _, s := range sections {
		open := false
		out = append(out, Panel{ID: id, Type: "row", Title: s.title, Collapsed: &open, GridPos: GridPos{H: 1, W: 24, Y: y}})
		id++
		y++
		for _, line := range s.lines {
			h, x := 0, 0
			for i, p := range line {
				w := 24 / len(line)
				if i == len(line)-1 {
					w = 24 - x
				}
				p.ID = id
				id++
				p.GridPos = GridPos{H: height(p.Type), W: w, X: x, Y: y}
				x += w
				h = max(h, p.GridPos.H)
				out = append(out, p)
			}
			y += h
		}
	}
	return out
}

func height(panelType string) int {
	if panelType == "stat" {
		return 4
	}
	return 8
}

func datasourceVar() Variable {
	return Variable{
		Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus",
		Refresh: 1, Options: []any{},
	}
}

// queryVar is a label_values variable. Multi-value variables match every
// value with .+ rather than Grafana's long alternation, which keeps queries
// short on big fleets.
func queryVar(name, label, query string, multi bool) Variable {
	v := Variable{
		Name: name, Label: label, Type: "query",
		Query:      VarQuery{Query: query, RefID: "PrometheusVariableQueryEditor-VariableQuery"},
		Definition: query, Datasource: &DatasourceRef,
		Refresh: 2, // on time range change: new nodes and users appear
		Sort:    1, Options: []any{},
	}
	if multi {
		v.Multi, v.IncludeAll, v.AllValue = true, true, ".+"
	}
	return v
}

// q is a range query; legend uses Grafana's {{label}} syntax.
func q(expr, legend string) Target {
	return Target{Datasource: DatasourceRef, Expr: expr, LegendFormat: legend, Range: true}
}

// instant is a table-format instant query.
func instant(expr string) Target {
	return Target{Datasource: DatasourceRef, Expr: expr, Instant: true, Format: "table"}
}

func panel(kind, title, unit, description string, targets []Target, options map[string]any) Panel {
	for i := range targets {
		targets[i].RefID = string(rune('A' + i))
	}
	return Panel{
		Type: kind, Title: title, Description: description, Datasource: &DatasourceRef,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit}, Overrides: []any{}},
		Options:     options, Targets: targets,
	}
}

func timeseries(title, unit, description string, targets ...Target) Panel {
	return panel("timeseries", title, unit, description, targets, map[string]any{
		"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
		"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
	})
}

func stat(title, unit, description string, targets ...Target) Panel {
	return panel("stat", title, unit, description, targets, map[string]any{
		"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
		"colorMode":     "value",
		"graphMode":     "area",
		"textMode":      "auto",
	})
}

// table shows instant queries with the Time column hidden.
func table(title, unit, description string, targets ...Target) Panel {
	p := panel("table", title, unit, description, targets, map[string]any{"showHeader": true})
	p.Transformations = []any{
		map[string]any{"id": "merge", "options": map[string]any{}},
		map[string]any{"id": "organize", "options": map[string]any{"excludeByName": map[string]any{"Time": true}}},
	}
	return p
}

func stateTimeline(title, description string, targets ...Target) Panel {
	p := panel("state-timeline", title, unitNone, description, targets, map[string]any{
		"showValue": "never", "mergeValues": true, "rowHeight": 0.8,
	})
	p.FieldConfig.Defaults.Mappings = []any{map[string]any{
		"type": "value",
		"options": map[string]any{
			"0": map[string]any{"text": "-", "color": "transparent"},
			"1": map[string]any{"text": "current", "color": "green"},
		},
	}}
	return p
}

func (p Panel) withRange(lo, hi float64) Panel {
	p.FieldConfig.Defaults.Min, p.FieldConfig.Defaults.Max = &lo, &hi
	return p
}

func (p Panel) withNoValue(text string) Panel {
	p.FieldConfig.Defaults.NoValue = text
	return p
}

// withBool maps 0/1 to words, for up/drained style gauges.
func (p Panel) withBool(zero, one string) Panel {
	p.FieldConfig.Defaults.Mappings = []any{map[string]any{
		"type": "value",
		"options": map[string]any{
			"0": map[string]any{"text": zero, "color": "red"},
			"1": map[string]any{"text": one, "color": "green"},
		},
	}}
	return p
}

// withText shows a series' legend (for example a version or a status)
// instead of its value.
func (p Panel) withText() Panel {
	p.Options["textMode"] = "name"
	p.Options["graphMode"] = "none"
	p.Options["colorMode"] = "none"
	return p
}
