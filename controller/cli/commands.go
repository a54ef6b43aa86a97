package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/boxfleet/boxfleet/controller/store"
)

// CLI holds the admin commands' shared flags.
type CLI struct {
	URL string
	// TokenFile is --admin.token-file, which serve also reads: empty
	// means the command's own default.
	TokenFile string
	Output    string
	Out       io.Writer
	Now       func() time.Time

	// adminOnly are the flags only the admin commands use.
	adminOnly []*kingpin.FlagClause
}

// DefaultTokenFile is where the admin commands look for the admin token
// without --admin.token-file: serve's default with its default --data.dir.
const DefaultTokenFile = "data/admin.token"

// Register adds the admin subcommands to app, and the flags they share.
// The flags belong to the application, not to each command, so that they
// may come before the command as well as after it (boxfleet --url U user
// list); HideAdminFlags keeps them out of serve's help.
func Register(app *kingpin.Application) *CLI {
	c := &CLI{Out: os.Stdout, Now: time.Now}
	c.adminOnly = append(c.adminOnly,
		app.Flag("url", "Controller URL for admin commands.").Envar("BOXFLEET_URL").Default("http://127.0.0.1:8080"),
		app.Flag("output", "Output format of admin commands: table or json.").Short('o').Default("table"))
	c.adminOnly[0].StringVar(&c.URL)
	c.adminOnly[1].EnumVar(&c.Output, "table", "json")
	// One name for the admin token file everywhere: serve writes it, the
	// admin commands read it.
	app.Flag("admin.token-file", "Admin token file: serve creates it with a random token (mode 0600) when missing, default <data.dir>/admin.token; the admin commands send its token, default "+DefaultTokenFile+".").
		Envar("BOXFLEET_TOKEN_FILE").StringVar(&c.TokenFile)
	// The admin commands' name for it before 0.1.0, still in scripts.
	app.Flag("token-file", "Old name of --admin.token-file.").Hidden().StringVar(&c.TokenFile)
	c.userCommands(app.Command("user", "Manage users."))
	c.planCommands(app.Command("plan", "Manage plans (templates for new users)."))
	c.nodeCommands(app.Command("node", "Manage nodes."))
	c.hookCommands(app.Command("hook", "Manage outgoing hooks (HTTP POSTs of audit-log events)."))
	c.adminCommands(app.Command("admin", "Manage admin accounts (people who log in to the UI), their roles and second factors."))
	c.tokenCommands(app.Command("token", "Manage named API tokens (automation), each with a role."))
	c.sessionCommands(app.Command("session", "List and revoke admins' browser sessions."))
	ev := app.Command("events", "Show the audit log, newest first.")
	object := ev.Flag("object", "Only events about this user, plan or node.").String()
	limit := ev.Flag("limit", "How many events.").Default("50").Int()
	ev.Action(func(*kingpin.ParseContext) error {
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *object != "" {
			q.Set("object", *object)
		}
		var out struct{ Events []*store.Event }
		return c.call(http.MethodGet, "/api/v1/events", q, nil, &out, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tTIME\tACTOR\tACTION\tOBJECT\tDETAIL")
			for _, e := range out.Events {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s/%s\t%s\n", e.ID, e.At.Format(time.RFC3339), e.Actor, e.Action, e.ObjectType, e.ObjectName, e.Detail)
			}
		})
	})
	return c
}

// HideAdminFlags leaves the admin commands' own flags out of the help,
// for serve, which does not use them. They still parse, as before.
func (c *CLI) HideAdminFlags() {
	for _, f := range c.adminOnly {
		f.Hidden()
	}
}

// call runs one API request and prints either the raw JSON or the table
// that table() writes.
func (c *CLI) call(method, path string, q url.Values, body, out any, table func(io.Writer)) error {
	raw, err := c.do(method, path, q, body, out)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		if len(raw) == 0 {
			raw = []byte("{}\n")
		}
		_, err = c.Out.Write(raw)
		return err
	}
	if table != nil {
		tw := tabwriter.NewWriter(c.Out, 2, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return nil
}

// userFlags are the limit flags shared by user add, user update and plan put.
type userFlags struct {
	limit, expire, reset, onHold, note, duration *string
	devices                                      *int64
	groups                                       *[]string
	noGroups                                     *bool
	// Whether the flag was given at all: --devices 0 lifts a device limit
	// and --note "" clears a note, which a zero value alone cannot say.
	setDevices, setNote bool
}

func addUserFlags(cmd *kingpin.CmdClause, plan bool) *userFlags {
	f := &userFlags{
		limit:  cmd.Flag("limit", "Traffic limit per period, e.g. 100GiB (0 = unlimited).").String(),
		reset:  cmd.Flag("reset", "When usage resets: no_reset, day, week, month (calendar, UTC) or year.").Enum(store.ResetStrategies...),
		onHold: cmd.Flag("on-hold", "Start on hold: the period, e.g. 30d, begins at first use.").String(),
		groups: cmd.Flag("group", "Node group the user may use (repeatable; none = all).").Strings(),
	}
	f.devices = cmd.Flag("devices", "How many source IPs at once (0 = unlimited).").IsSetByUser(&f.setDevices).Int64()
	f.note = cmd.Flag("note", "Free text.").IsSetByUser(&f.setNote).String()
	if plan {
		f.duration = cmd.Flag("duration", "How long a user made from the plan lasts, e.g. 30d.").String()
	} else {
		f.expire = cmd.Flag("expire", "Expiry: 30d from now, a date (2026-12-31) or never.").String()
	}
	// A plain flag, not a flag action: kingpin runs the command's action
	// before the actions of flags that follow it.
	f.noGroups = cmd.Flag("no-groups", "Allow every node group.").Bool()
	return f
}

func (f *userFlags) spec(cmd *kingpin.CmdClause, now time.Time) (store.UserSpec, error) {
	var sp store.UserSpec
	if *f.limit != "" {
		n, err := ParseBytes(*f.limit)
		if err != nil {
			return sp, err
		}
		sp.TrafficLimit = &n
	}
	if *f.reset != "" {
		sp.ResetStrategy = f.reset
	}
	if f.expire != nil && *f.expire != "" {
		t, err := ParseExpiry(*f.expire, now)
		if err != nil {
			return sp, err
		}
		sp.ExpireAt = &t
	}
	if *f.onHold != "" {
		n, err := ParseDuration(*f.onHold)
		if err != nil {
			return sp, err
		}
		sp.OnHoldSeconds = &n
	}
	if f.setDevices {
		sp.DeviceLimit = f.devices
	}
	if len(*f.groups) > 0 || *f.noGroups {
		g := append([]string{}, *f.groups...)
		sp.Groups = &g
	}
	if f.setNote {
		sp.Note = f.note
	}
	return sp, nil
}

func (c *CLI) userCommands(cmd *kingpin.CmdClause) {
	add := cmd.Command("add", "Create a user with fresh credentials.")
	addName := add.Arg("name", "User name (letters, digits, _ . @ -).").Required().String()
	addPlan := add.Flag("plan", "Start from this plan.").String()
	addFlags := addUserFlags(add, false)
	add.Action(func(*kingpin.ParseContext) error {
		sp, err := addFlags.spec(add, c.Now())
		if err != nil {
			return err
		}
		body := map[string]any{"name": *addName}
		if *addPlan != "" {
			body["plan"] = *addPlan
		}
		mergeSpec(body, sp)
		var u store.User
		return c.call(http.MethodPost, "/api/v1/users", nil, body, &u, func(w io.Writer) { userDetail(w, &u, c.URL) })
	})

	list := cmd.Command("list", "List users.")
	status := list.Flag("status", "Only users with this status.").String()
	group := list.Flag("group", "Only users allowed on this node group.").String()
	search := list.Flag("search", "Only users whose name or note contains this.").String()
	limit := list.Flag("limit", "Page size.").Default("100").Int()
	offset := list.Flag("offset", "Skip this many users.").Default("0").Int()
	list.Action(func(*kingpin.ParseContext) error {
		q := url.Values{"limit": {strconv.Itoa(*limit)}, "offset": {strconv.Itoa(*offset)}}
		for k, v := range map[string]string{"status": *status, "group": *group, "search": *search} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page struct {
			Users []*store.User
			Total int
		}
		return c.call(http.MethodGet, "/api/v1/users", q, nil, &page, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tSTATUS\tUSED\tLIMIT\tEXPIRES\tGROUPS")
			for _, u := range page.Users {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Status, HumanBytes(u.Used()), limitText(u.TrafficLimit), expiryText(u.ExpireAt), groupsText(u.Groups))
			}
			fmt.Fprintf(w, "(%d of %d)\n", len(page.Users), page.Total)
		})
	})

	get := cmd.Command("get", "Show one user, with the subscription URL.")
	getName := get.Arg("name", "User name.").Required().String()
	get.Action(func(*kingpin.ParseContext) error {
		var u store.User
		return c.call(http.MethodGet, "/api/v1/users/"+url.PathEscape(*getName), nil, nil, &u, func(w io.Writer) { userDetail(w, &u, c.URL) })
	})

	upd := cmd.Command("update", "Change a user's limits; flags left out stay as they are.")
	updName := upd.Arg("name", "User name.").Required().String()
	updFlags := addUserFlags(upd, false)
	upd.Action(func(*kingpin.ParseContext) error {
		sp, err := updFlags.spec(upd, c.Now())
		if err != nil {
			return err
		}
		var u store.User
		return c.call(http.MethodPatch, "/api/v1/users/"+url.PathEscape(*updName), nil, sp, &u, func(w io.Writer) { userDetail(w, &u, c.URL) })
	})

	susp := cmd.Command("suspend", "Suspend a user by hand; no alert will lift it.")
	suspName := susp.Arg("name", "User name.").Required().String()
	reason := susp.Flag("reason", "Why, for the audit log.").String()
	susp.Action(func(*kingpin.ParseContext) error {
		var u store.User
		return c.call(http.MethodPost, "/api/v1/users/"+url.PathEscape(*suspName)+"/suspend", nil,
			map[string]string{"reason": *reason}, &u, func(w io.Writer) { userDetail(w, &u, c.URL) })
	})

	for _, a := range []struct{ name, help, path string }{
		{"resume", "Lift a suspension.", "/resume"},
		{"reset", "Zero the current period's usage.", "/reset"},
		{"rotate-token", "Issue a new subscription URL; the old one stops working at once.", "/rotate-token"},
	} {
		sub := cmd.Command(a.name, a.help)
		n := sub.Arg("name", "User name.").Required().String()
		path := a.path
		sub.Action(func(*kingpin.ParseContext) error {
			var u store.User
			return c.call(http.MethodPost, "/api/v1/users/"+url.PathEscape(*n)+path, nil, nil, &u, func(w io.Writer) { userDetail(w, &u, c.URL) })
		})
	}

	del := cmd.Command("delete", "Delete a user (the ledger keeps its history).")
	delName := del.Arg("name", "User name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, "/api/v1/users/"+url.PathEscape(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted %s\n", *delName)
		})
	})
}

// mergeSpec puts the set fields of sp into a JSON object body.
func mergeSpec(body map[string]any, sp store.UserSpec) {
	b, _ := json.Marshal(sp)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	maps.Copy(body, m)
}

func userDetail(w io.Writer, u *store.User, base string) {
	fmt.Fprintf(w, "name\t%s\n", u.Name)
	fmt.Fprintf(w, "status\t%s\t%s\n", u.Status, u.StatusReason)
	fmt.Fprintf(w, "used\t%s (up %s, down %s) of %s, reset %s\n", HumanBytes(u.Used()), HumanBytes(u.UsedUp), HumanBytes(u.UsedDown), limitText(u.TrafficLimit), u.ResetStrategy)
	fmt.Fprintf(w, "expires\t%s\n", expiryText(u.ExpireAt))
	if u.OnHoldSeconds > 0 {
		fmt.Fprintf(w, "on hold\t%s from first use\n", time.Duration(u.OnHoldSeconds)*time.Second)
	}
	fmt.Fprintf(w, "devices\t%s\n", map[bool]string{true: "unlimited", false: strconv.FormatInt(u.DeviceLimit, 10)}[u.DeviceLimit == 0])
	fmt.Fprintf(w, "groups\t%s\n", groupsText(u.Groups))
	if u.Plan != "" {
		fmt.Fprintf(w, "plan\t%s\n", u.Plan)
	}
	if u.Note != "" {
		fmt.Fprintf(w, "note\t%s\n", u.Note)
	}
	fmt.Fprintf(w, "subscription\t%s/sub/%s\n", strings.TrimSuffix(base, "/"), u.SubToken)
}

func limitText(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return HumanBytes(n)
}

func expiryText(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format("2006-01-02 15:04 MST")
}

func groupsText(g []string) string {
	if len(g) == 0 {
		return "all"
	}
	return strings.Join(g, ",")
}
