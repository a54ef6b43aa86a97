package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
)

// ParseBytes reads sizes the way operators write them: 100GiB, 1.5TB, 0
// (unlimited), or a plain number of bytes.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	if f, unit, ok := splitFloat(s); ok {
		mult, err := units.ParseStrictBytes("1" + unit)
		if err == nil {
			// Out-of-range floats would convert to a negative limit, and a
			// fraction of a byte to 0, which means unlimited: both are errors.
			v := f * float64(mult)
			if v >= math.MaxInt64 || (v < 1 && f > 0) {
				return 0, fmt.Errorf("%q is out of range", s)
			}
			return int64(v), nil
		}
	}
	n, err := units.ParseStrictBytes(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 100GiB or 500MB", s)
	}
	return n, nil
}

func splitFloat(s string) (float64, string, bool) {
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i <= 0 {
		return 0, "", false
	}
	f, err := strconv.ParseFloat(s[:i], 64)
	return f, s[i:], err == nil && f >= 0
}

// ParseExpiry reads an expiry: a duration from now (30d, 12h, 1w, 1y), a
// date (2026-12-31, end of that day UTC), an RFC 3339 time, or "never".
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	switch s {
	case "never", "none", "0":
		return time.Time{}, nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return now.Add(time.Duration(d)).UTC().Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Add(24*time.Hour - time.Second), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an expiry like 30d, 2026-12-31 or never", s)
}

// ParseDuration reads 30d, 12h, 1w into seconds.
func ParseDuration(s string) (int64, error) {
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 30d or 12h", s)
	}
	return int64(time.Duration(d) / time.Second), nil
}

// HumanBytes prints a size in IEC units with one decimal.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	// Just under the next unit, rounding would print "1024.0 KiB".
	if v >= unit-0.05 && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
