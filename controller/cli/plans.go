package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (c *CLI) planCommands(cmd *kingpin.CmdClause) {
	put := cmd.Command("put", "Create or replace a plan.")
	putName := put.Arg("name", "Plan name.").Required().String()
	f := addUserFlags(put, true)
	put.Action(func(*kingpin.ParseContext) error {
		sp, err := f.spec(put, c.Now())
		if err != nil {
			return err
		}
		body := map[string]any{"reset_strategy": "no_reset"}
		mergeSpec(body, sp)
		if *f.duration != "" {
			n, err := ParseDuration(*f.duration)
			if err != nil {
				return err
			}
			body["duration_seconds"] = n
		}
		var p store.Plan
		return c.call(http.MethodPut, "/api/v1/plans/"+url.PathEscape(*putName), nil, body, &p, func(w io.Writer) { planTable(w, []*store.Plan{&p}) })
	})

	list := cmd.Command("list", "List plans.")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Plans []*store.Plan }
		return c.call(http.MethodGet, "/api/v1/plans", nil, nil, &out, func(w io.Writer) { planTable(w, out.Plans) })
	})

	get := cmd.Command("get", "Show one plan.")
	getName := get.Arg("name", "Plan name.").Required().String()
	get.Action(func(*kingpin.ParseContext) error {
		var p store.Plan
		return c.call(http.MethodGet, "/api/v1/plans/"+url.PathEscape(*getName), nil, nil, &p, func(w io.Writer) { planTable(w, []*store.Plan{&p}) })
	})

	del := cmd.Command("delete", "Delete a plan (users made from it keep their limits).")
	delName := del.Arg("name", "Plan name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, "/api/v1/plans/"+url.PathEscape(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted %s\n", *delName)
		})
	})
}

func planTable(w io.Writer, ps []*store.Plan) {
	fmt.Fprintln(w, "NAME\tLIMIT\tRESET\tDURATION\tON HOLD\tDEVICES\tGROUPS")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, limitText(p.TrafficLimit), p.ResetStrategy,
			durText(p.DurationSeconds), durText(p.OnHoldSeconds), p.DeviceLimit, groupsText(p.Groups))
	}
}

func durText(s int64) string {
	if s == 0 {
		return "-"
	}
	d := time.Duration(s) * time.Second
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
