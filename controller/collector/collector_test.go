package collector

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
)

// A user's period end is exported for the rules that look ahead (the
// reset zeroes the use); a no_reset user has none.
func TestPeriodEnd(t *testing.T) {
	st := storetest.SQLite(t)
	st.Now = func() time.Time { return time.Date(2025, 5, 14, 10, 0, 0, 0, time.UTC) }
	ctx := context.Background()
	for name, strategy := range map[string]string{"m": "month", "w": "week", "n": "no_reset"} {
		if _, err := st.CreateUser(ctx, "t", name, "", store.UserSpec{ResetStrategy: &strategy}); err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	want := `# HELP boxfleet_user_period_end_timestamp_seconds When the user's current traffic period ends and its use is reset; absent for no_reset.
# TYPE boxfleet_user_period_end_timestamp_seconds gauge
boxfleet_user_period_end_timestamp_seconds{user="m"} 1.748736e+09
boxfleet_user_period_end_timestamp_seconds{user="w"} 1.7476128e+09
`
	c := &Collector{Store: st, Log: log, Timeout: 5 * time.Second}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "boxfleet_user_period_end_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}
