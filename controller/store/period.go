package store

import "time"

// periodStart is the start of the calendar period (UTC) that contains now.
// Calendar periods rather than rolling 30-day windows: operators sell
// "per month" and users expect the counter to reset on the 1st.
func periodStart(strategy string, now int64) int64 {
	t := time.Unix(now, 0).UTC()
	y, m, d := t.Date()
	switch strategy {
	case "day":
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
	case "week":
		wd := (int(t.Weekday()) + 6) % 7 // Monday = 0
		return time.Date(y, m, d-wd, 0, 0, 0, 0, time.UTC).Unix()
	case "month":
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).Unix()
	case "year":
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	return 0 // no_reset: one period for the user's whole life
}

// newPeriodStart is the start to record when a period begins at now on
// strategy (creation, a manual reset): the calendar boundary, or now itself
// for no_reset, whose one period starts when it is begun.
func newPeriodStart(strategy string, now int64) int64 {
	if ps := periodStart(strategy, now); ps != 0 {
		return ps
	}
	return now
}

// switchedPeriodStart is the start to record when a user moves to strategy
// without a reset: moving to no_reset carries the usage over, so the period
// keeps the start it had (prev).
func switchedPeriodStart(strategy string, now, prev int64) int64 {
	if ps := periodStart(strategy, now); ps != 0 {
		return ps
	}
	if prev != 0 {
		return prev
	}
	return now
}

// shownPeriodStart is when the current period began, as the API shows it:
// no_reset rows written before periods were dated hold 0, and their one
// period began when the user was created.
func (r *userRow) shownPeriodStart() int64 {
	if r.PeriodStart == 0 {
		return r.CreatedAt
	}
	return r.PeriodStart
}

// day is the ledger's day key, yyyymmdd in UTC.
func day(ts int64) int {
	y, m, d := time.Unix(ts, 0).UTC().Date()
	return y*10000 + int(m)*100 + d
}
