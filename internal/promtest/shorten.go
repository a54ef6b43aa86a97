package promtest

import "regexp"

var (
	intervals = regexp.MustCompile(`(scrape_interval|evaluation_interval|refresh_interval): \S+`)
	timeouts  = regexp.MustCompile(`scrape_timeout: \S+`)
	groupWait = regexp.MustCompile(`group_wait: \S+`)
	groupIntv = regexp.MustCompile(`group_interval: \S+`)
)

// Shorten rewrites the shipped prometheus.yml or alertmanager.yml for a
// test: every scrape, evaluation and discovery interval becomes 1s and
// Alertmanager's grouping waits 1s and 2s. Alert rules keep their `for`,
// so tests measure the shipped policies, only faster.
func Shorten(s string) string {
	s = intervals.ReplaceAllString(s, "$1: 1s")
	s = timeouts.ReplaceAllString(s, "scrape_timeout: 1s")
	s = groupWait.ReplaceAllString(s, "group_wait: 1s")
	return groupIntv.ReplaceAllString(s, "group_interval: 2s")
}
