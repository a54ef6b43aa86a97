// Package dashboards holds boxfleet's Grafana dashboards as Go values. The
// JSON files beside this package are generated from them (go generate), so a
// panel is written once, in one style, and the lint test checks both.
package dashboards

//go:generate go run ./gen .

import (
	"bytes"
	"encoding/json"
)

// DatasourceRef points every panel and query at the ${datasource} variable,
// so the dashboards work against whichever Prometheus the operator picks.
var DatasourceRef = Ref{Type: "prometheus", UID: "${datasource}"}

// Ref is a Grafana datasource reference.
type Ref struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Dashboard is the subset of Grafana's dashboard model boxfleet uses.
type Dashboard struct {
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	Description   string     `json:"description"`
	Tags          []string   `json:"tags"`
	Editable      bool       `json:"editable"`
	GraphTooltip  int        `json:"graphTooltip"`
	Refresh       string     `json:"refresh"`
	SchemaVersion int        `json:"schemaVersion"`
	Time          TimeRange  `json:"time"`
	Timezone      string     `json:"timezone"`
	Links         []Link     `json:"links"`
	Templating    Templating `json:"templating"`
	Panels        []Panel    `json:"panels"`
}

// TimeRange is the default time window.
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Link is a dashboard-level link; boxfleet links its dashboards by tag.
type Link struct {
	Title       string   `json:"title"`
	Type        string   `json:"type"`
	Tags        []string `json:"tags"`
	AsDropdown  bool     `json:"asDropdown"`
	IncludeVars bool     `json:"includeVars"`
	KeepTime    bool     `json:"keepTime"`
}

// Templating holds the dashboard variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a dashboard variable: the datasource picker or a label_values
// query.
type Variable struct {
	Name       string   `json:"name"`
	Label      string   `json:"label"`
	Type       string   `json:"type"`
	Query      any      `json:"query"`
	Definition string   `json:"definition,omitempty"`
	Datasource *Ref     `json:"datasource,omitempty"`
	Refresh    int      `json:"refresh"`
	Multi      bool     `json:"multi"`
	IncludeAll bool     `json:"includeAll"`
	AllValue   string   `json:"allValue,omitempty"`
	Sort       int      `json:"sort"`
	Current    struct{} `json:"current"`
	Options    []any    `json:"options"`
}

// VarQuery is the query of a Prometheus query variable.
type VarQuery struct {
	Query string `json:"query"`
	RefID string `json:"refId"`
}

// Panel is one panel or row.
type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	Datasource  *Ref           `json:"datasource,omitempty"`
	GridPos     GridPos        `json:"gridPos"`
	FieldConfig *FieldConfig   `json:"fieldConfig,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
	Targets     []Target       `json:"targets,omitempty"`
	// Transformations shape instant table queries (hide the Time column).
	Transformations []any   `json:"transformations,omitempty"`
	Collapsed       *bool   `json:"collapsed,omitempty"`
	Panels          []Panel `json:"panels,omitempty"`
}

// GridPos places a panel on Grafana's 24-column grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// FieldConfig carries the unit and display defaults of a panel.
type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

// FieldDefaults are the defaults every field of a panel gets.
type FieldDefaults struct {
	Unit     string         `json:"unit"`
	Min      *float64       `json:"min,omitempty"`
	Max      *float64       `json:"max,omitempty"`
	Decimals *int           `json:"decimals,omitempty"`
	NoValue  string         `json:"noValue,omitempty"`
	Mappings []any          `json:"mappings,omitempty"`
	Custom   map[string]any `json:"custom,omitempty"`
}

// Target is one PromQL query of a panel.
type Target struct {
	RefID        string `json:"refId"`
	Datasource   Ref    `json:"datasource"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Instant      bool   `json:"instant,omitempty"`
	Range        bool   `json:"range"`
	Format       string `json:"format,omitempty"`
}

// JSON renders d the way the committed files are written. PromQL keeps its
// > and & unescaped, so the files read like the queries they hold.
func (d Dashboard) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// All returns every dashboard, keyed by the file name it is written to.
func All() map[string]Dashboard {
	return map[string]Dashboard{
		"fleet-overview.json":    fleetOverview(),
		"node-detail.json":       nodeDetail(),
		"user-detail.json":       userDetail(),
		"controller-health.json": controllerHealth(),
	}
}
