package accounting

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// commitDelayProxy stands between one controller and MariaDB and holds
// every COMMIT the controller sends for a while before passing it on: the
// fault injection that used to be a hidden flag of the binary, now done
// from outside the process. While a COMMIT is held, the transaction has
// done its reads and writes and is not yet committed, so a kill at that
// moment lands between query and commit.
type commitDelayProxy struct {
	*testsupport.MySQLProxy
	held atomic.Int32 // COMMITs being held now
}

func newCommitDelayProxy(t *testing.T, dsn string, delay time.Duration) *commitDelayProxy {
	t.Helper()
	p := &commitDelayProxy{}
	p.MySQLProxy = testsupport.StartMySQLProxy(t, dsn, func() testsupport.PacketHooks {
		return testsupport.PacketHooks{FromClient: func(_, payload []byte) {
			// COM_QUERY "COMMIT"
			if len(payload) > 0 && payload[0] == 0x03 && bytes.EqualFold(bytes.TrimSpace(payload[1:]), []byte("COMMIT")) {
				p.held.Add(1)
				time.Sleep(delay)
				p.held.Add(-1)
			}
		}}
	})
	return p
}

// waitHeld waits until a COMMIT is being held, and reports whether one was
// within d.
func (p *commitDelayProxy) waitHeld(d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if p.held.Load() > 0 {
			return true
		}
	}
	return false
}
