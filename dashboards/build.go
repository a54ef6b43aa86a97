// Package dashboards holds boxfleet's Grafana dashboards as Go code written
// with Grafana's foundation SDK, so every panel, query and variable follows
// Grafana's own schema. The JSON files beside this package are generated
// from them (go generate), and the lint test checks both.
package dashboards

//go:generate go run ./gen .

import (
	"bytes"
	"encoding/json"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

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

// The dashboards are Grafana's classic (v1) JSON, which Grafana 12 loads
// from provisioning files as it is. The SDK marks its v1 dashboard types
// deprecated in favour of the v2 schema, which Grafana 12 serves only behind
// feature toggles; these aliases are the one place that names them.
type (
	boardBuilder = dashboard.DashboardBuilder //nolint:staticcheck // v1 on purpose, see above
	board        = dashboard.Dashboard        //nolint:staticcheck // v1 on purpose, see above
)

func newBoard(title string) *boardBuilder {
	return dashboard.NewDashboardBuilder(title) //nolint:staticcheck // v1 on purpose, see above
}

// datasource points every panel, query and variable at the ${datasource}
// variable, so the dashboards work against whichever Prometheus the
// operator picks.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: new("prometheus"), Uid: new("${datasource}")}
}

// All returns every dashboard, keyed by the file name it is written to.
func All() map[string]*boardBuilder {
	return map[string]*boardBuilder{
		"fleet-overview.json":    fleetOverview(),
		"node-detail.json":       nodeDetail(),
		"user-detail.json":       userDetail(),
		"controller-health.json": controllerHealth(),
	}
}

// JSON builds b and renders it the way the committed files are written.
// PromQL keeps its > and & unescaped, so the files read like the queries
// they hold.
func JSON(b *boardBuilder) ([]byte, error) {
	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	return render(d)
}

func render(d board) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// panel is any of the SDK's panel builders.
type panel = cog.Builder[dashboard.Panel]

// section is a titled row of panel lines; each line shares the grid's
// width evenly.
type section struct {
	title string
	lines [][]panel
}

func newDashboard(uid, title, description string, vars []*dashboard.QueryVariableBuilder, sections ...section) *boardBuilder {
	b := newBoard(title).
		Uid(uid).
		Description(description).
		Tags([]string{"boxfleet"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair). // a spike lines up across panels
		Refresh("30s").
		Time("now-6h", "now").
		Timezone("browser").
		Link(linkAbove{dashboard.NewDashboardLinkBuilder("boxfleet").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"boxfleet"}).
			AsDropdown(true).IncludeVars(true).KeepTime(true)}).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus"))
	for _, v := range vars {
		b.WithVariable(v)
	}
	// The SDK places rows and panels left to right, top to bottom; ids and
	// sizes are ours, so a panel keeps its id while others are added after it.
	id := uint32(1)
	for _, s := range sections {
		b.WithRow(dashboard.NewRowBuilder(s.title).Id(id).Collapsed(false))
		id++
		for _, line := range s.lines {
			x := 0
			for i, p := range line {
				w := 24 / len(line)
				if i == len(line)-1 {
					w = 24 - x
				}
				x += w
				b.WithPanel(placed{p, id, uint32(w)})
				id++
			}
		}
	}
	return b
}

// placed gives a panel its id and size; the dashboard builder then gives it
// its place.
type placed struct {
	panel
	id, w uint32
}

func (p placed) Build() (dashboard.Panel, error) {
	built, err := p.panel.Build()
	if err != nil {
		return built, err
	}
	h := uint32(8)
	if built.Type == "stat" {
		h = 4
	}
	built.Id = new(p.id)
	built.GridPos = &dashboard.GridPos{H: h, W: p.w}
	return built, nil
}

// linkAbove keeps a dashboard link in the bar above the panels: the SDK
// defaults links into the controls menu, where they are one click away.
type linkAbove struct {
	*dashboard.DashboardLinkBuilder
}

func (l linkAbove) Build() (dashboard.DashboardLink, error) {
	link, err := l.DashboardLinkBuilder.Build()
	link.Placement = nil
	return link, err
}

// queryVar is a label_values variable. Multi-value variables match every
// value with .+ rather than Grafana's long alternation, which keeps queries
// short on big fleets.
func queryVar(name, label, query string, multi bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery",
		}}).
		Definition(query).
		Datasource(datasource()).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged). // new nodes and users appear
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if multi {
		v.Multi(true).IncludeAll(true).AllValue(".+")
	}
	return v
}

// q is a range query; legend uses Grafana's {{label}} syntax.
func q(expr, legend string) *prometheus.DataqueryBuilder {
	t := prometheus.NewDataqueryBuilder().Datasource(datasource()).Expr(expr).Range()
	if legend != "" {
		t.LegendFormat(legend)
	}
	return t
}

// instant is a table-format instant query.
func instant(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasource()).Expr(expr).Instant().Format(prometheus.PromQueryFormatTable)
}

// targets names the queries A, B, ... in order.
func targets(qs []*prometheus.DataqueryBuilder) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], len(qs))
	for i, t := range qs {
		out[i] = t.RefId(string(rune('A' + i)))
	}
	return out
}

func timeseriesPanel(title, unit, description string, qs ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).Description(description).Datasource(datasource()).Unit(unit).
		Targets(targets(qs)).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

func statPanel(title, unit, description string, qs ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).Description(description).Datasource(datasource()).Unit(unit).
		Targets(targets(qs)).
		ReduceOptions(common.NewReduceDataOptionsBuilder().
			Calcs([]string{"lastNotNull"}).Fields("").Values(false)).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		TextMode(common.BigValueTextModeAuto).
		Orientation(common.VizOrientationAuto)
}

// textStat shows a series' legend (for example a version or a status)
// instead of its value.
func textStat(title, unit, description string, qs ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	return statPanel(title, unit, description, qs...).
		TextMode(common.BigValueTextModeName).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeNone)
}

// tablePanel shows instant queries with the Time column hidden.
func tablePanel(title, unit, description string, qs ...*prometheus.DataqueryBuilder) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).Description(description).Datasource(datasource()).Unit(unit).
		Targets(targets(qs)).
		ShowHeader(true).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
		}})
}

func stateTimelinePanel(title, description string, qs ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).Description(description).Datasource(datasource()).Unit(unitNone).
		Targets(targets(qs)).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		RowHeight(0.8).
		// Grafana's own defaults, which the SDK would leave empty.
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeSingle).
			Sort(common.SortOrderNone)).
		Mappings(valueMap(map[string][2]string{"0": {"-", "transparent"}, "1": {"current", "green"}}))
}

// boolMap maps 0/1 to words, for up/drained style panels.
func boolMap(zero, one string) []dashboard.ValueMapping {
	return valueMap(map[string][2]string{"0": {zero, "red"}, "1": {one, "green"}})
}

// valueMap maps values to a text and a colour.
func valueMap(m map[string][2]string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for v, tc := range m {
		opts[v] = dashboard.ValueMappingResult{Text: new(tc[0]), Color: new(tc[1])}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}
