package collector

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
)

// Handler serves /metrics: the registry's metrics, then the per-user
// gauges written straight from the database in the text format.
//
// A registry gathers every metric into memory before writing any: at
// 100,000 users that is half a million protobuf messages, over a hundred
// MiB of garbage per scrape. Here the users are read once into compact
// rows (tens of bytes each) and each family is written from them. The
// Collector given to the registry must have StreamUsers set, or the
// families would appear twice.
func Handler(g prometheus.Gatherer, st *store.Store, log logrus.FieldLogger, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		mfs, err := g.Gather()
		if err != nil {
			log.WithError(err).Warn("gathering the registry")
		}
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		var out io.Writer = w
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			// BestSpeed: 100,000 users' text compresses well even so, and
			// the default level cost a scrape more CPU than reading the
			// users from the database (BenchmarkScrape).
			gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer gz.Close()
			out = gz
		}
		bw := bufio.NewWriterSize(out, 64<<10)
		defer bw.Flush()
		enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				log.WithError(err).Warn("encoding a metric family")
				return
			}
		}
		if err := WriteUsers(ctx, bw, st); err != nil {
			// The status line is gone; the scrape ends short, and
			// boxfleet_store_up from the next Collect says why.
			log.WithError(err).Warn("reading the users failed")
		}
	})
}

// gaugeRow is one user's gauges, compact.
type gaugeRow struct {
	name                                 string
	status                               string
	used, limit, expire, devices, period int64 // period: end of the period, 0 for none
}

// WriteUsers writes the per-user families and boxfleet_users in the text
// exposition format, each family whole, from one read of the users.
func WriteUsers(ctx context.Context, w io.Writer, st *store.Store) error {
	var rows []gaugeRow
	statuses := map[string]string{} // interned
	counts := map[string]int{}
	for _, s := range store.Statuses {
		statuses[s], counts[s] = s, 0
	}
	err := st.UserGauges(ctx, func(u *store.UserGauge) {
		s, ok := statuses[u.Status]
		if !ok {
			s = strings.Clone(u.Status)
			statuses[s] = s
		}
		counts[s]++
		r := gaugeRow{name: u.Name, status: s, used: u.Used, limit: u.TrafficLimit, expire: u.ExpireAt, devices: u.DeviceLimit}
		if end, ok := u.PeriodEnd(); ok {
			r.period = end.Unix()
		}
		rows = append(rows, r)
	})
	if err != nil {
		return err
	}
	var b []byte
	// Label names in sorted order, as client_golang writes them, so that
	// a scrape reads the same whichever path wrote it.
	family := func(name, help string, val func(*gaugeRow) (int64, bool), withStatus bool) error {
		b = append(b[:0], "# HELP "+name+" "+help+"\n# TYPE "+name+" gauge\n"...)
		for i := range rows {
			v, ok := val(&rows[i])
			if !ok {
				continue
			}
			b = append(b, name+`{`...)
			if withStatus {
				b = append(b, `status="`...)
				b = appendEscaped(b, rows[i].status)
				b = append(b, `",`...)
			}
			b = append(b, `user="`...)
			b = appendEscaped(b, rows[i].name)
			b = append(b, `"} `...)
			b = strconv.AppendFloat(b, float64(v), 'g', -1, 64)
			b = append(b, '\n')
			if len(b) > 32<<10 {
				if _, err := w.Write(b); err != nil {
					return err
				}
				b = b[:0]
			}
		}
		_, err := w.Write(b)
		return err
	}
	positive := func(f func(*gaugeRow) int64) func(*gaugeRow) (int64, bool) {
		return func(r *gaugeRow) (int64, bool) { v := f(r); return v, v > 0 }
	}
	fams := []struct {
		name, help string
		val        func(*gaugeRow) (int64, bool)
		withStatus bool
	}{
		{"boxfleet_user_traffic_used_bytes", usedHelp, func(r *gaugeRow) (int64, bool) { return r.used, true }, false},
		{"boxfleet_user_traffic_limit_bytes", limitHelp, positive(func(r *gaugeRow) int64 { return r.limit }), false},
		{"boxfleet_user_expiry_timestamp_seconds", expiryHelp, positive(func(r *gaugeRow) int64 { return r.expire }), false},
		{"boxfleet_user_period_end_timestamp_seconds", periodEndHelp, positive(func(r *gaugeRow) int64 { return r.period }), false},
		{"boxfleet_user_device_limit", devicesHelp, positive(func(r *gaugeRow) int64 { return r.devices }), false},
		{"boxfleet_user_status", statusHelp, func(r *gaugeRow) (int64, bool) { return 1, true }, true},
	}
	for _, f := range fams {
		if err := family(f.name, f.help, f.val, f.withStatus); err != nil {
			return err
		}
	}
	b = append(b[:0], "# HELP boxfleet_users "+usersHelp+"\n# TYPE boxfleet_users gauge\n"...)
	for _, s := range sortedKeys(counts) {
		b = append(b, `boxfleet_users{status="`...)
		b = appendEscaped(b, s)
		b = append(b, `"} `...)
		b = strconv.AppendInt(b, int64(counts[s]), 10)
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}

// appendEscaped escapes a label value as the text format wants.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
