package cli_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/controller/cli"
)

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"12345", 12345},
		{" 1GiB ", 1 << 30},
		{"100GiB", 100 << 30},
		{"100GB", 100e9},
		{"1kB", 1000},
		{"1KB", 1000},
		{"1.5GiB", 3 << 29},
		{"1.5TB", 1.5e12},
		{".5GiB", 1 << 29},
		{"0.5KiB", 512},
		{"5B", 5},
		{"7EiB", 7 << 60},
		{"9223372036854775807", math.MaxInt64},
	} {
		got, err := cli.ParseBytes(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"", "GiB", "-5", "-5GiB", "1.5", "1.2.3GiB", "100 GiB", "100gib", "1K", "1Ki", "1e3GB",
		"9223372036854775808",            // one past int64
		"8EiB", "10EiB", "99999999999TB", // would wrap to a negative limit
		"0.1B", // a fraction of a byte is not 0, which means unlimited
	} {
		if got, err := cli.ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 1, 31, 12, 0, 0, 500, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"30d", time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)},
		{"1w", time.Date(2026, 2, 7, 12, 0, 0, 0, time.UTC)},
		{"12h", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"1d12h", time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)},
		{"1y", time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)},
		// A date means the end of that day, UTC: "until the 31st" includes it.
		{"2026-12-31", time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"2028-02-29", time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC)},
		{"2026-12-31T10:00:00+02:00", time.Date(2026, 12, 31, 8, 0, 0, 0, time.UTC)},
		// The zero time is what the API reads as "no expiry".
		{"never", time.Time{}},
		{"none", time.Time{}},
		{"0", time.Time{}},
	} {
		got, err := cli.ParseExpiry(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if err == nil && !got.IsZero() && got.Nanosecond() != 0 {
			t.Errorf("ParseExpiry(%q) keeps sub-second noise: %v", c.in, got)
		}
	}
	for _, in := range []string{"", "30", "-1d", "1.5d", "2026-02-30", "2026-13-01", "300y", "tomorrow", "31/12/2026"} {
		if got, err := cli.ParseExpiry(in, now); err == nil {
			t.Errorf("ParseExpiry(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]int64{"30d": 30 * 86400, "12h": 43200, "1w": 604800, "0": 0, "90s": 90} {
		if got, err := cli.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1d", "1.5h", "30"} {
		if got, err := cli.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %d, want an error", in, got)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1<<20 - 1, "1.0 MiB"}, // not "1024.0 KiB"
		{1 << 20, "1.0 MiB"},
		{1<<30 - 1, "1.0 GiB"},
		{100 << 30, "100.0 GiB"},
		{1<<40 + 1<<39, "1.5 TiB"},
		{math.MaxInt64, "8.0 EiB"},
	} {
		if got := cli.HumanBytes(c.in); got != c.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", c.in, got, c.want)
		}
	}
	// Every size a limit is written in reads back as itself.
	for _, s := range []string{"1KiB", "10MiB", "100GiB", "2TiB", "1PiB"} {
		n, err := cli.ParseBytes(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := cli.ParseBytes(strings.ReplaceAll(cli.HumanBytes(n), " ", ""))
		if err != nil || back != n {
			t.Errorf("%s printed as %q reads back as %d, %v", s, cli.HumanBytes(n), back, err)
		}
	}
}
