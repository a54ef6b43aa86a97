package meter

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
)

// Flush polls sing-box once more, settles every remainder the attribution
// engine still holds, and writes the state file, and returns only when all
// of that is done. It is for the moment before sing-box stops or reloads:
// either restarts sing-box's counters, so whatever moved since the last
// poll would otherwise be lost, and a remainder left waiting would be given
// to the next instance's connections. Because the state is written, the
// exporter may be killed right after without losing the flushed bytes.
//
// The error is the poll's (sing-box could not be read) or the write's.
func (m *Meter) Flush(ctx context.Context) error {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	_, err := m.poll(ctx, true)
	return err
}

// settleNow folds into the counters what the engine was still holding after
// the snapshot requested at the given time.
func (m *Meter) settleNow(requested time.Time) {
	res := m.engine.SettleNow(requested)
	if res.Settled.Users != nil {
		m.cfg.Log.WithFields(logrus.Fields{"up": res.Settled.Remainder.Up, "down": res.Settled.Remainder.Down, "candidates": res.Settled.Users}).Debug("remainder attributed at flush")
	}
	if res.Unattributed != (attribution.Traffic{}) {
		m.cfg.Log.WithFields(logrus.Fields{"up": res.Unattributed.Up, "down": res.Unattributed.Down}).Debug("remainder declared unattributed at flush")
	}
	m.account(res)
}
