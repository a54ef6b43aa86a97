package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (c *CLI) hookCommands(cmd *kingpin.CmdClause) {
	put := cmd.Command("put", "Create or replace a hook: events are POSTed to the URL, signed with the secret (X-Boxfleet-Signature).")
	putName := put.Arg("name", "Hook name.").Required().String()
	// An argument, not --url: that flag names the controller.
	putURL := put.Arg("url", "Receiver URL (http or https).").Required().String()
	// A file, not a flag value: command lines end up in shell history and
	// in ps output.
	secretFile := put.Flag("secret-file", "File holding the signing secret (at least 16 characters); may be left out to keep the current one.").String()
	events := put.Flag("event", "Event to send (repeatable): an action such as user.suspend or node.drain, a family such as node.*, or *.").Required().Strings()
	put.Action(func(*kingpin.ParseContext) error {
		body := map[string]any{"url": *putURL, "events": *events}
		if *secretFile != "" {
			b, err := os.ReadFile(*secretFile)
			if err != nil {
				return fmt.Errorf("--secret-file: %w", err)
			}
			body["secret"] = strings.TrimSpace(string(b))
		}
		var h store.Hook
		return c.call(http.MethodPut, "/api/v1/hooks/"+url.PathEscape(*putName), nil, body, &h, func(w io.Writer) { hookTable(w, []*store.Hook{&h}) })
	})

	list := cmd.Command("list", "List hooks.")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Hooks []*store.Hook }
		return c.call(http.MethodGet, "/api/v1/hooks", nil, nil, &out, func(w io.Writer) { hookTable(w, out.Hooks) })
	})

	del := cmd.Command("delete", "Delete a hook and the deliveries still waiting for it.")
	delName := del.Arg("name", "Hook name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, "/api/v1/hooks/"+url.PathEscape(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted %s\n", *delName)
		})
	})

	dl := cmd.Command("deliveries", "Show a hook's deliveries, newest first.")
	dlName := dl.Arg("name", "Hook name.").Required().String()
	limit := dl.Flag("limit", "How many.").Default("50").Int()
	dl.Action(func(*kingpin.ParseContext) error {
		var out struct{ Deliveries []*store.Delivery }
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		return c.call(http.MethodGet, "/api/v1/hooks/"+url.PathEscape(*dlName)+"/deliveries", q, nil, &out, func(w io.Writer) {
			deliveryTable(w, out.Deliveries)
		})
	})

	rd := cmd.Command("redeliver", "Queue one of a hook's deliveries again now (a failed one, say), with a fresh count of attempts.")
	rdName := rd.Arg("name", "Hook name.").Required().String()
	rdID := rd.Arg("id", "Delivery id (the ID column of hook deliveries).").Required().Int64()
	rd.Action(func(*kingpin.ParseContext) error {
		var d store.Delivery
		path := "/api/v1/hooks/" + url.PathEscape(*rdName) + "/deliveries/" + strconv.FormatInt(*rdID, 10) + "/redeliver"
		return c.call(http.MethodPost, path, nil, nil, &d, func(w io.Writer) { deliveryTable(w, []*store.Delivery{&d}) })
	})
}

func deliveryTable(w io.Writer, ds []*store.Delivery) {
	fmt.Fprintln(w, "ID\tEVENT\tACTION\tSTATUS\tATTEMPTS\tLAST\tNEXT\tERROR")
	for _, d := range ds {
		last, next := "-", "-"
		if d.LastStatus != 0 {
			last = strconv.Itoa(d.LastStatus)
		}
		if d.NextAttemptAt != nil {
			next = d.NextAttemptAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.EventID, d.Action, d.Status, d.Attempts, last, next, d.LastError)
	}
}

func hookTable(w io.Writer, hs []*store.Hook) {
	fmt.Fprintln(w, "NAME\tURL\tEVENTS")
	for _, h := range hs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", h.Name, h.URL, strings.Join(h.Events, ","))
	}
}
