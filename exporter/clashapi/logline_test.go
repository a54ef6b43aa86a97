package clashapi

import (
	"strings"
	"testing"
)

type logLineCase struct {
	name string
	in   string
	ok   bool
	want LogLine // only checked when ok
}

var logLineCases = []logLineCase{
	// Lines sing-box writes for every inbound connection.
	{
		name: "from tcp",
		in:   "[3571023 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144",
		ok:   true,
		want: LogLine{ID: 3571023, Inbound: "vless-in", Kind: LogFrom, Source: "127.0.0.1:52144"},
	},
	{
		name: "from packet",
		in:   "[17 0ms] inbound/shadowsocks[ss-in]: inbound packet connection from 10.0.0.7:40000",
		ok:   true,
		want: LogLine{ID: 17, Inbound: "ss-in", Kind: LogFrom, Source: "10.0.0.7:40000"},
	},
	{
		name: "from ipv6 loopback",
		in:   "[5 0ms] inbound/vless[vless-in]: inbound connection from [::1]:5678",
		ok:   true,
		want: LogLine{ID: 5, Inbound: "vless-in", Kind: LogFrom, Source: "[::1]:5678"},
	},
	{
		name: "from ipv6 packet with zone-less global address",
		in:   "[6 1ms] inbound/hysteria2[hy2]: inbound packet connection from [2001:db8::1]:443",
		ok:   true,
		want: LogLine{ID: 6, Inbound: "hy2", Kind: LogFrom, Source: "[2001:db8::1]:443"},
	},
	{
		name: "from ipv4-mapped ipv6",
		in:   "[7 0ms] inbound/vless[vless-in]: inbound connection from [::ffff:1.2.3.4]:1",
		ok:   true,
		want: LogLine{ID: 7, Inbound: "vless-in", Kind: LogFrom, Source: "[::ffff:1.2.3.4]:1"},
	},
	{
		name: "user tcp",
		in:   "[3571023 2ms] inbound/vless[vless-in]: [alice] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 3571023, Inbound: "vless-in", Kind: LogUser, User: "alice"},
	},
	{
		name: "user packet",
		in:   "[3571024 3ms] inbound/vless[vless-in]: [bob] inbound packet connection to 8.8.8.8:53",
		ok:   true,
		want: LogLine{ID: 3571024, Inbound: "vless-in", Kind: LogUser, User: "bob"},
	},
	{
		name: "user tcp to ipv6 destination",
		in:   "[9 0ms] inbound/trojan[tr]: [carol] inbound connection to [2001:db8::2]:443",
		ok:   true,
		want: LogLine{ID: 9, Inbound: "tr", Kind: LogUser, User: "carol"},
	},
	{
		name: "max uint32 id",
		in:   "[4294967295 0ms] inbound/vless[vless-in]: inbound connection from 1.2.3.4:5",
		ok:   true,
		want: LogLine{ID: 4294967295, Inbound: "vless-in", Kind: LogFrom, Source: "1.2.3.4:5"},
	},
	{
		name: "zero id",
		in:   "[0 0ms] inbound/vless[vless-in]: inbound connection from 1.2.3.4:5",
		ok:   true,
		want: LogLine{ID: 0, Inbound: "vless-in", Kind: LogFrom, Source: "1.2.3.4:5"},
	},
	{
		name: "id with leading zeros is decimal",
		in:   "[0010 0ms] inbound/vless[vless-in]: inbound connection from 1.2.3.4:5",
		ok:   true,
		want: LogLine{ID: 10, Inbound: "vless-in", Kind: LogFrom, Source: "1.2.3.4:5"},
	},
	{
		name: "long duration",
		in:   "[12 1m2.5s] inbound/vless[vless-in]: [alice] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 12, Inbound: "vless-in", Kind: LogUser, User: "alice"},
	},
	{
		name: "empty inbound tag",
		in:   "[1 0ms] inbound/vless[]: inbound connection from 1.2.3.4:5",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "", Kind: LogFrom, Source: "1.2.3.4:5"},
	},
	{
		name: "inbound tag with spaces and dashes",
		in:   "[1 0ms] inbound/vless[my vless-in 2]: inbound connection from 1.2.3.4:5",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "my vless-in 2", Kind: LogFrom, Source: "1.2.3.4:5"},
	},

	// Hostile user names.
	{
		name: "user with bracket-space",
		in:   "[1 0ms] inbound/vless[vless-in]: [a] b] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "a] b"},
	},
	{
		name: "user with bracket-colon-space",
		in:   "[1 0ms] inbound/vless[vless-in]: [x]: y] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "x]: y"},
	},
	{
		name: "user with opening brackets",
		in:   "[1 0ms] inbound/vless[vless-in]: [[[x] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "[[x"},
	},
	{
		name: "user with quotes",
		in:   `[1 0ms] inbound/vless[vless-in]: ["bob" 'o'] inbound connection to example.com:443`,
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: `"bob" 'o'`},
	},
	{
		name: "user with backslashes",
		in:   `[1 0ms] inbound/vless[vless-in]: [C:\users\n\] inbound connection to example.com:443`,
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: `C:\users\n\`},
	},
	{
		name: "user with unicode",
		in:   "[1 0ms] inbound/vless[vless-in]: [алиса 😀 ü] inbound packet connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "алиса 😀 ü"},
	},
	{
		name: "user with newline",
		in:   "[1 0ms] inbound/vless[vless-in]: [line1\nline2] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "line1\nline2"},
	},
	{
		name: "user looking like a from-line",
		in:   "[1 0ms] inbound/vless[vless-in]: [x] inbound connection from 6.6.6.6:1] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "x] inbound connection from 6.6.6.6:1"},
	},
	{
		// Ambiguous by construction: the first marker wins, so a user name
		// that holds the marker itself is cut short. Destinations come from
		// the client while user names come from the operator's config, so
		// first-match is the choice a client cannot exploit.
		name: "user containing the tcp marker, first match wins",
		in:   "[1 0ms] inbound/vless[vless-in]: [evil] inbound connection to x] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "evil"},
	},
	{
		name: "client-chosen tcp destination holding the packet marker",
		in:   "[1 0ms] inbound/vless[vless-in]: [alice] inbound connection to a] inbound packet connection to b:1",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "alice"},
	},
	{
		name: "client-chosen packet destination holding the tcp marker",
		in:   "[1 0ms] inbound/vless[vless-in]: [alice] inbound packet connection to evil] inbound connection to x:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: "alice"},
	},
	{
		// sing-box never writes "[]" (it logs the user index instead of an
		// empty name); the parser accepts it with an empty User, which the
		// attribution engine treats as "no user".
		name: "empty user",
		in:   "[1 0ms] inbound/vless[vless-in]: [] inbound connection to example.com:443",
		ok:   true,
		want: LogLine{ID: 1, Inbound: "vless-in", Kind: LogUser, User: ""},
	},

	// Lines that must be rejected.
	{name: "empty", in: ""},
	{name: "only bracket", in: "["},
	{name: "no id prefix", in: "inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "id without duration", in: "[3571023] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "non-numeric id", in: "[abc 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "hex id", in: "[0x10 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "negative id", in: "[-1 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "plus-signed id", in: "[+1 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "empty id", in: "[ 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "id overflowing uint32", in: "[4294967296 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "id overflowing uint64", in: "[99999999999999999999 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "leading space", in: " [1 0ms] inbound/vless[vless-in]: inbound connection from 127.0.0.1:52144"},
	{name: "outbound line", in: "[3571023 5ms] outbound/direct[direct]: outbound connection to example.com:443"},
	{name: "outbound line mimicking inbound message", in: "[3571023 5ms] outbound/vless[out]: inbound connection from 1.2.3.4:5"},
	{name: "router line", in: "[3571023 1ms] router: found user alice"},
	{name: "router match line", in: "[3571023 1ms] router: match[0] => direct"},
	{name: "inbound without user", in: "[3571023 1ms] inbound/vless[vless-in]: inbound connection to example.com:443"},
	{name: "inbound other message", in: "[3571023 1ms] inbound/vless[vless-in]: process connection from 1.2.3.4:5: EOF"},
	{name: "inbound without tag brackets", in: "[1 0ms] inbound/vless: inbound connection from 1.2.3.4:5"},
	{name: "tag end before tag open", in: "[1 0ms] inbound/]: x[y]: inbound connection from 1.2.3.4:5"},
	{name: "missing space after tag", in: "[1 0ms] inbound/vless[vless-in]:inbound connection from 1.2.3.4:5"},
	{name: "no timestamp close", in: "[3571023 0ms inbound/vless[vless-in]: inbound connection from 1.2.3.4:5"},
	{name: "timestamp prefix only", in: "[3571023 0ms] "},
	{name: "truncated after kind", in: "[3571023 0ms] inbound/vless"},
	{name: "truncated in tag", in: "[3571023 0ms] inbound/vless[vless-"},
	{name: "truncated after tag", in: "[3571023 0ms] inbound/vless[vless-in]"},
	{name: "truncated after tag separator", in: "[3571023 0ms] inbound/vless[vless-in]: "},
	{name: "truncated from without address", in: "[3571023 0ms] inbound/vless[vless-in]: inbound connection from "},
	{name: "truncated packet from without address", in: "[3571023 0ms] inbound/vless[vless-in]: inbound packet connection from "},
	{name: "truncated before from", in: "[3571023 0ms] inbound/vless[vless-in]: inbound connection"},
	{name: "truncated user", in: "[3571023 0ms] inbound/vless[vless-in]: [alice"},
	{name: "truncated user bracket", in: "[3571023 0ms] inbound/vless[vless-in]: [alice]"},
	{name: "truncated user marker", in: "[3571023 0ms] inbound/vless[vless-in]: [alice] inbound connection to"},
	{name: "truncated user packet marker", in: "[3571023 0ms] inbound/vless[vless-in]: [alice] inbound packet connection"},
	{name: "user line with other message", in: "[3571023 0ms] inbound/vless[vless-in]: [alice] connection closed"},
}

func TestParseLogLine(t *testing.T) {
	for _, tc := range logLineCases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseLogLine(tc.in)
			if ok != tc.ok {
				t.Fatalf("ParseLogLine(%q) ok = %v, want %v (got %+v)", tc.in, ok, tc.ok, got)
			}
			if !ok {
				return
			}
			if got != tc.want {
				t.Errorf("ParseLogLine(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

// The from-line and the user-line of one connection carry the same ID, which
// is what lets the engine join them.
func TestParseLogLineSameConnection(t *testing.T) {
	from, ok1 := ParseLogLine("[42 0ms] inbound/vless[vless-in]: inbound connection from 203.0.113.9:61000")
	user, ok2 := ParseLogLine("[42 2ms] inbound/vless[vless-in]: [alice] inbound connection to example.com:443")
	if !ok1 || !ok2 {
		t.Fatalf("ok = %v, %v", ok1, ok2)
	}
	if from.ID != user.ID || from.Inbound != user.Inbound {
		t.Errorf("from %+v and user %+v do not join", from, user)
	}
	if from.Kind == user.Kind {
		t.Errorf("both lines have kind %v", from.Kind)
	}
	if from.User != "" || user.Source != "" {
		t.Errorf("fields leak across kinds: from %+v user %+v", from, user)
	}
}

func FuzzParseLogLine(f *testing.F) {
	for _, tc := range logLineCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := ParseLogLine(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(s, "[") {
			t.Fatalf("accepted %q without an ID prefix", s)
		}
		if strings.Contains(l.Inbound, "]: ") {
			t.Fatalf("Inbound %q of %q contains \"]: \"", l.Inbound, s)
		}
		if !strings.Contains(s, "["+l.Inbound+"]: ") {
			t.Fatalf("Inbound %q is not bracketed in %q", l.Inbound, s)
		}
		switch l.Kind {
		case LogUser:
			if !strings.Contains(s, "["+l.User+"] inbound") {
				t.Fatalf("User %q is not bracketed in %q", l.User, s)
			}
			if l.Source != "" {
				t.Fatalf("user line %q has Source %q", s, l.Source)
			}
		case LogFrom:
			if l.Source == "" {
				t.Fatalf("from line %q has empty Source", s)
			}
			if !strings.HasSuffix(s, l.Source) {
				t.Fatalf("line %q does not end with Source %q", s, l.Source)
			}
			if l.User != "" {
				t.Fatalf("from line %q has User %q", s, l.User)
			}
		default:
			t.Fatalf("accepted %q with kind %v", s, l.Kind)
		}
	})
}
