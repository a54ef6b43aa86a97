package actions

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is "at most N actions per window", written N/window (30/1m).
type Rate struct {
	N      int
	Window time.Duration
}

// ParseRate reads N/window; "0" or "" disables the limit.
func ParseRate(s string) (Rate, error) {
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	n, w, ok := strings.Cut(s, "/")
	count, err1 := strconv.Atoi(n)
	win, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || count < 0 || win <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate like 30/1m", s)
	}
	return Rate{N: count, Window: win}, nil
}

func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", r.N, r.Window)
}
