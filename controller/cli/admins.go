package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/boxfleet/boxfleet/controller/store"
)

// limitFlags are a reseller account's limits.
type limitFlags struct {
	maxUsers   *int64
	maxTraffic *string
	plans      *[]string
	groups     *[]string
	set        bool
}

func addLimitFlags(cmd *kingpin.CmdClause) *limitFlags {
	f := &limitFlags{}
	f.maxUsers = cmd.Flag("max-users", "Reseller: most users it may manage (0 = no limit).").IsSetByUser(&f.set).Int64()
	f.maxTraffic = cmd.Flag("max-traffic", "Reseller: most traffic it may hand out in all, as the sum of its users' limits, e.g. 1TiB (0 = no limit).").String()
	f.plans = cmd.Flag("plan", "Reseller: a plan it may create users from (repeatable; none = any).").Strings()
	f.groups = cmd.Flag("group", "Reseller: a node group its users may use (repeatable; none = any).").Strings()
	return f
}

func (f *limitFlags) limits() (*store.Limits, error) {
	if !f.set && *f.maxTraffic == "" && len(*f.plans) == 0 && len(*f.groups) == 0 {
		return nil, nil
	}
	l := &store.Limits{MaxUsers: *f.maxUsers, Plans: *f.plans, Groups: *f.groups}
	if *f.maxTraffic != "" {
		n, err := ParseBytes(*f.maxTraffic)
		if err != nil {
			return nil, err
		}
		l.MaxTraffic = n
	}
	return l, nil
}

// readPassword reads a password from file, or asks for it twice on the
// terminal without echo, or reads one line from a non-terminal stdin.
func readPassword(file string, stderr io.Writer) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(stderr, "New password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Again: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the two passwords differ")
	}
	return string(a), nil
}

func (c *CLI) adminCommands(cmd *kingpin.CmdClause) {
	path := func(name string, rest ...string) string {
		return "/api/v1/admins/" + url.PathEscape(name) + strings.Join(rest, "")
	}

	add := cmd.Command("add", "Create an admin account; without --password-file a random password is printed once.")
	addName := add.Arg("name", "Account name (letters, digits, _ . @ -).").Required().String()
	addRole := add.Flag("role", "owner, operator, viewer or reseller.").Required().Enum(store.Roles...)
	addPwFile := add.Flag("password-file", "File holding the password (at least 12 characters).").String()
	addLimits := addLimitFlags(add)
	add.Action(func(*kingpin.ParseContext) error {
		l, err := addLimits.limits()
		if err != nil {
			return err
		}
		body := map[string]any{"name": *addName, "role": *addRole}
		if l != nil {
			body["limits"] = l
		}
		if *addPwFile != "" {
			pw, err := readPassword(*addPwFile, os.Stderr)
			if err != nil {
				return err
			}
			body["password"] = pw
		}
		var out struct {
			store.Admin
			Password string `json:"password"`
		}
		return c.call(http.MethodPost, "/api/v1/admins", nil, body, &out, func(w io.Writer) {
			adminDetail(w, &out.Admin)
			if out.Password != "" {
				fmt.Fprintf(w, "password\t%s\t(shown only now)\n", out.Password)
			}
		})
	})

	list := cmd.Command("list", "List admin accounts.")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Admins []*store.Admin }
		return c.call(http.MethodGet, "/api/v1/admins", nil, nil, &out, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tROLE\tSTATE\tTOTP\tLAST LOGIN\tLIMITS")
			for _, a := range out.Admins {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Role, stateText(a.Disabled), yesNo(a.TOTP), seenText(a.LastLoginAt), limitsText(a.Limits))
			}
		})
	})

	update := cmd.Command("update", "Change an account's role or reseller limits.")
	upName := update.Arg("name", "Account name.").Required().String()
	upRole := update.Flag("role", "owner, operator, viewer or reseller.").Enum(store.Roles...)
	upLimits := addLimitFlags(update)
	update.Action(func(*kingpin.ParseContext) error {
		l, err := upLimits.limits()
		if err != nil {
			return err
		}
		body := map[string]any{}
		if *upRole != "" {
			body["role"] = *upRole
		}
		if l != nil {
			body["limits"] = l
		}
		var a store.Admin
		return c.call(http.MethodPatch, path(*upName), nil, body, &a, func(w io.Writer) { adminDetail(w, &a) })
	})

	passwd := cmd.Command("passwd", "Set an account's password (asked for twice, or from --password-file or stdin); ends its sessions.")
	pwName := passwd.Arg("name", "Account name.").Required().String()
	pwFile := passwd.Flag("password-file", "File holding the new password.").String()
	passwd.Action(func(*kingpin.ParseContext) error {
		pw, err := readPassword(*pwFile, os.Stderr)
		if err != nil {
			return err
		}
		return c.call(http.MethodPut, path(*pwName, "/password"), nil, map[string]string{"password": pw}, nil, func(w io.Writer) {
			fmt.Fprintf(w, "password of %s changed; its sessions ended\n", *pwName)
		})
	})

	for _, st := range []struct {
		name, help string
		disabled   bool
	}{{"disable", "Disable an account: it cannot log in, its sessions and reseller tokens stop working.", true},
		{"enable", "Enable a disabled account.", false}} {
		sub := cmd.Command(st.name, st.help)
		name := sub.Arg("name", "Account name.").Required().String()
		sub.Action(func(*kingpin.ParseContext) error {
			var a store.Admin
			return c.call(http.MethodPatch, path(*name), nil, map[string]bool{"disabled": st.disabled}, &a, func(w io.Writer) { adminDetail(w, &a) })
		})
	}

	del := cmd.Command("delete", "Delete an account with its sessions and reseller tokens.")
	delName := del.Arg("name", "Account name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, path(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted admin %s\n", *delName)
		})
	})

	totpCmd := cmd.Command("totp", "Second factor (TOTP, RFC 6238) of an account.")
	enable := totpCmd.Command("enable", "Enrol an authenticator: prints the secret and otpauth URI, then asks for one code from it before turning TOTP on, and prints recovery codes once.")
	enName := enable.Arg("name", "Account name.").Required().String()
	enCode := enable.Flag("code", "The authenticator's current code (else asked for).").String()
	enable.Action(func(*kingpin.ParseContext) error {
		var e store.TOTPEnrolment
		if err := c.quiet(http.MethodPost, path(*enName, "/totp"), nil, &e); err != nil {
			return err
		}
		code := *enCode
		if code == "" {
			fmt.Fprintf(os.Stderr, "secret:  %s\nURI:     %s\nAdd it to the authenticator, then type the code it shows: ", e.Secret, e.URI)
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("reading the code: %w", err)
			}
			code = strings.TrimSpace(line)
		}
		var out struct {
			Codes []string `json:"recovery_codes"`
		}
		return c.call(http.MethodPost, path(*enName, "/totp/confirm"), nil, map[string]string{"code": code}, &out, func(w io.Writer) {
			fmt.Fprintf(w, "TOTP is on for %s. Recovery codes, each usable once in place of a code (shown only now):\n", *enName)
			for _, rc := range out.Codes {
				fmt.Fprintln(w, rc)
			}
		})
	})
	disable := totpCmd.Command("disable", "Turn TOTP off (for an admin who lost the device and the recovery codes).")
	disName := disable.Arg("name", "Account name.").Required().String()
	disable.Action(func(*kingpin.ParseContext) error {
		var a store.Admin
		return c.call(http.MethodDelete, path(*disName, "/totp"), nil, nil, &a, func(w io.Writer) { adminDetail(w, &a) })
	})
}

func (c *CLI) tokenCommands(cmd *kingpin.CmdClause) {
	add := cmd.Command("add", "Create a named API token with a role and print it (shown only once).")
	name := add.Arg("name", "Token name.").Required().String()
	role := add.Flag("role", "owner, operator, viewer or reseller.").Required().Enum(store.Roles...)
	admin := add.Flag("admin", "For a reseller token: the reseller account it acts for.").String()
	expire := add.Flag("expire", "Expiry: 90d from now, a date (2026-12-31) or never.").Default("never").String()
	add.Action(func(*kingpin.ParseContext) error {
		body := map[string]any{"name": *name, "role": *role}
		if *admin != "" {
			body["admin"] = *admin
		}
		exp, err := ParseExpiry(*expire, c.Now())
		if err != nil {
			return err
		}
		if !exp.IsZero() {
			body["expires_at"] = exp
		}
		var out struct {
			store.APIToken
			Token string `json:"token"`
		}
		return c.call(http.MethodPost, "/api/v1/tokens", nil, body, &out, func(w io.Writer) {
			fmt.Fprintf(w, "token\t%s\n", out.Name)
			fmt.Fprintf(w, "role\t%s\n", out.Role)
			fmt.Fprintf(w, "expires\t%s\n", expiryText(out.ExpiresAt))
			fmt.Fprintf(w, "secret\t%s\t(shown only now)\n", out.Token)
		})
	})

	list := cmd.Command("list", "List named API tokens.")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Tokens []*store.APIToken }
		return c.call(http.MethodGet, "/api/v1/tokens", nil, nil, &out, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tROLE\tADMIN\tEXPIRES\tCREATED BY")
			for _, t := range out.Tokens {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, dash(t.Admin), expiryText(t.ExpiresAt), dash(t.CreatedBy))
			}
		})
	})

	del := cmd.Command("delete", "Revoke a named API token.")
	delName := del.Arg("name", "Token name.").Required().String()
	del.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(*delName), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "deleted token %s\n", *delName)
		})
	})
}

func (c *CLI) sessionCommands(cmd *kingpin.CmdClause) {
	list := cmd.Command("list", "List browser sessions (owner only).")
	list.Action(func(*kingpin.ParseContext) error {
		var out struct{ Sessions []*store.Session }
		return c.call(http.MethodGet, "/api/v1/sessions", nil, nil, &out, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tADMIN\tROLE\tADDRESS\tLAST SEEN\tEXPIRES\tUSER AGENT")
			for _, s := range out.Sessions {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Admin, s.Role, dash(s.Address),
					s.LastSeenAt.Format(time.RFC3339), s.ExpiresAt.Format(time.RFC3339), dash(s.UserAgent))
			}
		})
	})
	revoke := cmd.Command("revoke", "End a browser session by its ID.")
	id := revoke.Arg("id", "Session ID from session list.").Required().Int64()
	revoke.Action(func(*kingpin.ParseContext) error {
		return c.call(http.MethodDelete, fmt.Sprintf("/api/v1/sessions/%d", *id), nil, nil, nil, func(w io.Writer) {
			fmt.Fprintf(w, "revoked session %d\n", *id)
		})
	})
}

// quiet makes a call whose answer only the command itself uses.
func (c *CLI) quiet(method, path string, body, out any) error {
	_, err := c.do(method, path, nil, body, out)
	return err
}

func adminDetail(w io.Writer, a *store.Admin) {
	fmt.Fprintf(w, "admin\t%s\n", a.Name)
	fmt.Fprintf(w, "role\t%s\n", a.Role)
	fmt.Fprintf(w, "state\t%s\n", stateText(a.Disabled))
	fmt.Fprintf(w, "totp\t%s\n", yesNo(a.TOTP))
	if a.Limits != nil {
		fmt.Fprintf(w, "limits\t%s\n", limitsText(a.Limits))
	}
}

func limitsText(l *store.Limits) string {
	if l == nil {
		return "-"
	}
	var parts []string
	if l.MaxUsers > 0 {
		parts = append(parts, fmt.Sprintf("users≤%d", l.MaxUsers))
	}
	if l.MaxTraffic > 0 {
		parts = append(parts, "traffic≤"+HumanBytes(l.MaxTraffic))
	}
	if len(l.Plans) > 0 {
		parts = append(parts, "plans="+strings.Join(l.Plans, ","))
	}
	if len(l.Groups) > 0 {
		parts = append(parts, "groups="+strings.Join(l.Groups, ","))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func stateText(disabled bool) string {
	if disabled {
		return "disabled"
	}
	return "enabled"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
