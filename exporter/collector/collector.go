// Package collector exposes a meter's view as Prometheus metrics, built as
// const metrics at scrape time so that users who leave disappear at once.
package collector

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/meter"
)

// Source is what the collector reads; *meter.Meter implements it. The
// maps of a view are never written again once returned: the collector
// keeps the last scrape's users to tell what changed.
type Source interface {
	View() meter.View
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	upDesc           = desc("singbox_up", "Whether the last poll of sing-box's API succeeded.")
	infoDesc         = desc("singbox_info", "sing-box's version, as a label.", "version")
	trafficDesc      = desc("singbox_traffic_bytes_total", "Bytes sing-box moved, exact node totals.", "direction")
	connectionsDesc  = desc("singbox_connections", "Open connections by network.", "network")
	memoryDesc       = desc("singbox_memory_bytes", "Memory in use by sing-box, as its API reports it.")
	userTrafficDesc  = desc("singbox_user_traffic_bytes_total", "Bytes moved per user.", "user", "direction")
	userConnsDesc    = desc("singbox_user_connections", "Open connections per user.", "user")
	userIPsDesc      = desc("singbox_user_source_ips", "Distinct client IPs per user with a connection open now.", "user")
	userBucketDesc   = desc("singbox_user_source_ip_bucket", "1 for each bucket of the fleet's keyed hash that a client address of the user with a connection open now falls in (an IPv6 /64 counts as one address); at most 32 per user, the lowest. Distinct (user, bucket) pairs across nodes count a user's devices fleet-wide.", "user", "bucket")
	hiddenDesc       = desc("singbox_exporter_users_hidden", "Users with a counter here whose traffic series are not exposed, by reason: min_bytes (fewer bytes than --collector.user-min-bytes), idle (no byte for --collector.user-idle-timeout).", "reason")
	inboundDesc      = desc("singbox_inbound_traffic_bytes_total", "Bytes moved per inbound.", "inbound", "direction")
	unattributedDesc = desc("singbox_unattributed_traffic_bytes_total", "Node total minus the per-user sum: bytes no user could be found for.", "direction")
	estimatedDesc    = desc("singbox_exporter_attribution_estimated_bytes_total", "Per-user bytes split by estimate between several users (Clash API mode).", "direction")
	modeDesc         = desc("singbox_exporter_mode_info", "How per-user traffic is measured: api (sing-box's API service, exact), v2ray_api (exact) or clash_api (attributed).", "mode")
	pollsDesc        = desc("singbox_exporter_polls_total", "Polls of sing-box's API by result.", "result")
	pollDurationDesc = desc("singbox_exporter_poll_duration_seconds", "How long the last poll took.")
	pollIntervalDesc = desc("singbox_exporter_poll_interval_seconds", "Current interval between polls, adapted to their cost.")
	stateWritesDesc  = desc("singbox_exporter_state_writes_total", "Writes of the state file by result.", "result")
	stateLoadDesc    = desc("singbox_exporter_state_load_failed", "1 when the state file existed but could not be read at start.")
	logUpDesc        = desc("singbox_exporter_log_stream_up", "Whether the stream that names users is connected: sing-box's log stream, or its API service's connection events in api mode.")
	logLinesDesc     = desc("singbox_exporter_log_lines_total", "Log lines read from sing-box.")
	logErrorsDesc    = desc("singbox_exporter_log_stream_errors_total", "Times the log stream broke.")
	unownedDesc      = desc("singbox_exporter_unowned_connections", "Open connections whose user is not known: log level above info or lines missed, or, in api mode, opened since the last batch of connection events or without a user.")
	sinceDesc        = desc("singbox_exporter_counters_start_timestamp_seconds", "When the per-user and node counters started from zero; changes only when the state file is lost.")
	userRecentDesc   = desc("singbox_user_traffic_recent_bytes_total", "singbox_user_traffic_bytes_total again, for only the users whose counters moved (or appeared) within --collector.user-recent-window: the controller's accounting reads these instead of every user.", "user", "direction")
	recentCountDesc  = desc("singbox_exporter_user_recent_series", "How many series singbox_user_traffic_recent_bytes_total has in this scrape, so that a reader can tell it received every one (a relabelling that drops them does not drop this); absent when that series is off.")
	recentWindowDesc = desc("singbox_exporter_user_recent_window_seconds", "How long a user stays in singbox_user_traffic_recent_bytes_total after its counters last moved (--collector.user-recent-window); absent when that series is off.")
	userChangeDesc   = desc("singbox_exporter_user_counters_change_timestamp_seconds", "When the per-user traffic series last changed (a value moved, a series appeared or went), as the time of the first scrape that showed it; it never takes the same value twice, across restarts too.")
	restartsDesc     = desc("singbox_exporter_singbox_restarts_total", "sing-box restarts noticed by counters starting again.")
	lastPollDesc     = desc("singbox_exporter_last_poll_success_timestamp_seconds", "Unix time of the last successful poll of sing-box; bytes moved since are not counted yet.")
	allDescs         = []*prometheus.Desc{upDesc, infoDesc, trafficDesc, connectionsDesc, memoryDesc, userTrafficDesc, userConnsDesc, userIPsDesc, inboundDesc, unattributedDesc, estimatedDesc, modeDesc, pollsDesc, pollDurationDesc, pollIntervalDesc, lastPollDesc, stateWritesDesc, stateLoadDesc, logUpDesc, logLinesDesc, logErrorsDesc, unownedDesc, restartsDesc, sinceDesc, userChangeDesc, userRecentDesc, recentWindowDesc, recentCountDesc, userBucketDesc, hiddenDesc}
)

// Options tune what the collector exposes; the zero value exposes every
// user and no device buckets.
type Options struct {
	// UserMinBytes hides the traffic series of users who moved fewer
	// bytes (both directions together) on this node. The counters keep
	// counting, and a series that appears later starts from its whole
	// value, which the controller's accounting bills in full (a series it
	// has no checkpoint for counts from zero): with 1, users who never
	// moved a byte cost no series, and nothing is billed late.
	UserMinBytes uint64
	// UserIdleTimeout, when set, hides the traffic series of users whose
	// counters have not moved for that long; they come back, with their
	// whole value, at the next byte, and the accounting bills what they
	// moved meanwhile. What a user moved just before going idle is billed
	// only if a controller committed it before the series went, so the
	// timeout must be far longer than the accounting can be down.
	UserIdleTimeout time.Duration
	// UserRecentWindow, when set, exposes each user's traffic a second
	// time, as singbox_user_traffic_recent_bytes_total, from the scrape
	// that first shows its counters moved (or shows the user at all: a
	// user this process has not seen before counts as moving now, so after
	// a restart every user is in it for one window) until the window has
	// passed without a move. Every series whose value differs from an
	// earlier scrape's less than a window ago is therefore in the latest
	// scrape's recent series, and the controller, whose last read of the
	// node is that recent, reads only those. The window runs on the
	// monotonic clock: a step of the wall clock cannot cut it short.
	UserRecentWindow time.Duration
	// DeviceKey, the fleet's shared secret, turns on
	// singbox_user_source_ip_bucket (see devices.go).
	DeviceKey []byte
}

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	src     Source
	opts    Options
	devices *deviceHasher // nil without a device key
	now     func() time.Time

	mu    sync.Mutex
	moved map[string]lastMove // by user, with UserIdleTimeout or UserRecentWindow
	shown shownUsers
}

// shownUsers is the per-user traffic series one scrape exposed, and the
// change timestamp it carried.
//
// The controller's accounting skips a node whose change timestamp stayed
// the same since its last commit, so the timestamp must differ between any
// two scrapes whose per-user series differ: it is taken in the same lock
// as the comparison, from the same view as the series, and only grows. A
// counter of changes would start again at the same value after a restart
// and could then match a scrape of the previous process with other
// values; a time does not.
type shownUsers struct {
	users   map[string]attribution.Traffic // the view's own map: views are copies, never written again
	idle    map[string]bool                // hidden as idle then
	count   int                            // series pairs exposed
	changed int64                          // Unix ms
}

// lastMove is a user's counters when they last changed, and when that was
// seen.
type lastMove struct {
	t  attribution.Traffic
	at time.Time
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a collector reading src that exposes everything.
func New(src Source) *Collector { return NewWithOptions(src, Options{}) }

// NewWithOptions returns a collector reading src, tuned by o.
func NewWithOptions(src Source, o Options) *Collector {
	c := &Collector{src: src, opts: o, now: time.Now, moved: map[string]lastMove{}}
	// A new process starts from its own start time, which no scrape of
	// an earlier one can have carried.
	c.shown.changed = c.now().UnixMilli()
	if len(o.DeviceKey) > 0 {
		c.devices = newDeviceHasher(o.DeviceKey)
	}
	return c
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect builds the metrics from the latest view.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	v := c.src.View()
	gauge := func(d *prometheus.Desc, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, val, labels...)
	}
	counter := func(d *prometheus.Desc, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, val, labels...)
	}
	traffic := func(d *prometheus.Desc, t attribution.Traffic, labels ...string) {
		counter(d, float64(t.Up), append(labels, "upload")...)
		counter(d, float64(t.Down), append(labels, "download")...)
	}

	gauge(upDesc, boolFloat(v.Up))
	gauge(sinceDesc, float64(v.Counters.Since.Unix()))
	if v.Version != "" {
		gauge(infoDesc, 1, v.Version)
	}
	gauge(modeDesc, 1, v.Mode)
	traffic(trafficDesc, v.Counters.Node)
	traffic(unattributedDesc, v.Counters.Unattributed)
	traffic(estimatedDesc, v.Counters.Estimated)
	small, idle := 0, 0
	idleUsers, recent, changed := c.exposure(v.Counters.Users)
	gauge(userChangeDesc, float64(changed)/1e3)
	if c.opts.UserRecentWindow > 0 {
		gauge(recentWindowDesc, c.opts.UserRecentWindow.Seconds())
	}
	listed := 0
	for user, t := range v.Counters.Users {
		switch {
		case c.exposed(user, t, idleUsers):
			traffic(userTrafficDesc, t, user)
			if recent[user] {
				traffic(userRecentDesc, t, user)
				listed += 2
			}
		case t.Up+t.Down < c.opts.UserMinBytes:
			small++
		default:
			idle++
		}
	}
	if c.opts.UserRecentWindow > 0 {
		gauge(recentCountDesc, float64(listed))
	}
	gauge(hiddenDesc, float64(small), "min_bytes")
	gauge(hiddenDesc, float64(idle), "idle")
	for in, t := range v.Counters.Inbounds {
		traffic(inboundDesc, t, in)
	}
	if v.Up {
		gauge(memoryDesc, float64(v.Memory))
		for _, network := range []string{"tcp", "udp"} {
			gauge(connectionsDesc, float64(v.Connections[network]), network)
		}
		for user, a := range v.Active {
			gauge(userConnsDesc, float64(a.Connections), user)
			gauge(userIPsDesc, float64(a.SourceIPs), user)
		}
		if c.devices != nil {
			sources := make(map[string][]string, len(v.Active))
			for user, a := range v.Active {
				sources[user] = slices.Collect(maps.Keys(a.Sources))
			}
			for user, bs := range c.devices.buckets(sources) {
				for _, b := range bs {
					gauge(userBucketDesc, 1, user, strconv.Itoa(int(b)))
				}
			}
		}
		gauge(unownedDesc, float64(v.Unowned))
	}
	counter(pollsDesc, float64(v.Polls-v.PollErrors), "success")
	counter(pollsDesc, float64(v.PollErrors), "error")
	gauge(pollDurationDesc, v.PollDuration.Seconds())
	gauge(pollIntervalDesc, v.PollInterval.Seconds())
	// Absent until the first success since start: a zero would read as a
	// poll 56 years ago, and singbox_up already says sing-box is not read.
	if !v.LastSuccess.IsZero() {
		gauge(lastPollDesc, float64(v.LastSuccess.UnixMilli())/1e3)
	}
	counter(stateWritesDesc, float64(v.StateWrites), "success")
	counter(stateWritesDesc, float64(v.StateErrors), "error")
	gauge(stateLoadDesc, boolFloat(v.StateLoadFailed))
	gauge(logUpDesc, boolFloat(v.LogStreamUp))
	counter(logLinesDesc, float64(v.LogLines))
	counter(logErrorsDesc, float64(v.LogErrors))
	counter(restartsDesc, float64(v.Restarts))
}

// exposure decides which users' series this scrape hides as idle and
// which moved within the recent window, and returns the change timestamp
// that goes with the series it exposes.
func (c *Collector) exposure(users map[string]attribution.Traffic) (idle, recent map[string]bool, changedMs int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	idle, recent = c.moves(users)
	now := shownUsers{users: users, idle: idle, changed: c.shown.changed}
	// The series are the same when every user exposed now was exposed
	// before with the same values (equal values pass the byte threshold
	// alike, so only idleness can have hidden it), and as many users were
	// exposed before: then none went.
	same := true
	for user, t := range users {
		if !c.exposed(user, t, idle) {
			continue
		}
		now.count++
		if prev, ok := c.shown.users[user]; same && (!ok || prev != t || c.shown.idle[user]) {
			same = false
		}
	}
	if !same || now.count != c.shown.count {
		now.changed = max(c.now().UnixMilli(), c.shown.changed+1)
	}
	c.shown = now
	return idle, recent, now.changed
}

// exposed tells whether user's traffic series are exposed, given its
// counters and the users hidden as idle.
func (c *Collector) exposed(user string, t attribution.Traffic, idle map[string]bool) bool {
	return t.Up+t.Down >= c.opts.UserMinBytes && !idle[user]
}

// moves notes which users' counters moved since the last scrape and
// returns those that have not moved for the idle timeout (none without a
// timeout) and those that moved within the recent window (none without
// one). A user first seen counts as moving now, so after an exporter
// restart every series is exposed, and recent, for one timeout or window
// again. The caller holds c.mu.
func (c *Collector) moves(users map[string]attribution.Traffic) (idle, recent map[string]bool) {
	idleAfter, window := c.opts.UserIdleTimeout, c.opts.UserRecentWindow
	if idleAfter <= 0 && window <= 0 {
		return nil, nil
	}
	now := c.now()
	idle, recent = map[string]bool{}, map[string]bool{}
	for user, t := range users {
		m, ok := c.moved[user]
		if !ok || m.t != t {
			m = lastMove{t: t, at: now}
			c.moved[user] = m
		}
		since := now.Sub(m.at)
		if idleAfter > 0 && since >= idleAfter {
			idle[user] = true
		}
		if window > 0 && since < window {
			recent[user] = true
		}
	}
	for user := range c.moved {
		if _, ok := users[user]; !ok {
			delete(c.moved, user)
		}
	}
	return idle, recent
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
