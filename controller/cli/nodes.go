package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/boxfleet/boxfleet/controller/store"
)

func (c *CLI) nodeCommands(cmd *kingpin.CmdClause) {
	add := cmd.Command("add", "Create a node and print its token (shown only once).")
	addName := add.Arg("name", "Node name.").Required().String()
	labels := add.Flag("label", "Node label key=value (region, group, …); repeatable.").StringMap()
	add.Action(func(*kingpin.ParseContext) error {
		var out struct {
			store.Node
			Token string `json:"token"`
		}
		return c.call(http.MethodPost, "/api/v1/nodes", nil, map[string]any{"name": *addName, "labels": *labels}, &out, func(w io.Writer) {
			fmt.Fprintf(w, "node\t%s\n", out.Name)
			fmt.Fprintf(w, "token\t%s\n", out.Token)
			fmt.Fprintf(w, "\nOn the node, save the token to a file (mode 0600) and start singbox_exporter with\n")
			fmt.Fprintf(w, "  --controller.url=%s --controller.token-file=FILE --node.name=%s --node.address=PUBLIC_HOST\n", c.URL, out.Name)
		})
	})

	list := cmd.Command("list", "List nodes.")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Nodes []*store.Node }
		return c.call(http.MethodGet, "/api/v1/nodes", nil, nil, &out, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tADDRESS\tLABELS\tINBOUNDS\tDRAINED\tLAST SEEN")
			for _, n := range out.Nodes {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", n.Name, n.Address, labelsText(n.Labels), len(n.Inbounds), drainText(n), seenText(n.LastSeen))
			}
		})
	})

	get := cmd.Command("get", "Show one node.")
	getName := get.Arg("name", "Node name.").Required().String()
	get.Action(func(*kingpin.ParseContext) error {
		var n store.Node
		return c.call(http.MethodGet, "/api/v1/nodes/"+url.PathEscape(*getName), nil, nil, &n, func(w io.Writer) { nodeDetail(w, &n) })
	})

	drain := cmd.Command("drain", "Leave a node out of subscriptions.")
	drainName := drain.Arg("name", "Node name.").Required().String()
	reason := drain.Flag("reason", "Why, for the audit log.").String()
	force := drain.Flag("force", "Drain even if fewer healthy nodes than the controller's --nodes.drain-min-healthy would stay in the node's group (audited).").Bool()
	drain.Action(func(*kingpin.ParseContext) error {
		var n store.Node
		var q url.Values
		if *force {
			q = url.Values{"force": {"true"}}
		}
		return c.call(http.MethodPost, "/api/v1/nodes/"+url.PathEscape(*drainName)+"/drain", q,
			map[string]string{"reason": *reason}, &n, func(w io.Writer) { nodeDetail(w, &n) })
	})

	undrain := cmd.Command("undrain", "Bring a drained node back.")
	undrainName := undrain.Arg("name", "Node name.").Required().String()
	undrain.Action(func(*kingpin.ParseContext) error {
		var n store.Node
		return c.call(http.MethodPost, "/api/v1/nodes/"+url.PathEscape(*undrainName)+"/undrain", nil, nil, &n, func(w io.Writer) { nodeDetail(w, &n) })
	})

	del := cmd.Command("delete", "Forget a node; its token stops working.")
	delName := del.Arg("name", "Node name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted %s\n", *delName)
		})
	})
}

func nodeDetail(w io.Writer, n *store.Node) {
	fmt.Fprintf(w, "name\t%s\n", n.Name)
	fmt.Fprintf(w, "address\t%s\n", n.Address)
	fmt.Fprintf(w, "exporter\t%s\n", n.Exporter)
	fmt.Fprintf(w, "labels\t%s\n", labelsText(n.Labels))
	fmt.Fprintf(w, "drained\t%s\n", drainText(n))
	fmt.Fprintf(w, "last seen\t%s\n", seenText(n.LastSeen))
	for _, in := range n.Inbounds {
		fmt.Fprintf(w, "inbound\t%s\t%s\t%d\n", in.Tag, in.Type, in.Port)
	}
}

func labelsText(m map[string]string) string {
	var parts []string
	for _, k := range store.SortedLabelNames(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func drainText(n *store.Node) string {
	if !n.Drained {
		return "no"
	}
	return "yes: " + n.DrainReason
}

func seenText(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return time.Since(*t).Truncate(time.Second).String() + " ago"
}
