package meter

import (
	"runtime"
	"time"
)

// singboxPerConn is what one connection in a /connections answer is taken
// to cost sing-box to render (it builds a map per connection and marshals
// it): the design brief's figure, not yet measured against a real sing-box.
// The budget covers sing-box's share too, and the exporter cannot time
// another process's work on its behalf.
const singboxPerConn = 15 * time.Microsecond

// costMeter measures what one poll costs in CPU: the exporter's own time on
// the thread that reads and meters the snapshot, plus sing-box's estimated
// share. Polls are paced by this cost, never by their wall time, which
// grows with everything else that competes for the cores.
type costMeter struct {
	start time.Time
	cpu   int64
	cpuOK bool
}

// startCost begins measuring on the calling goroutine, which stays on its
// OS thread until done.
func startCost() *costMeter {
	runtime.LockOSThread()
	c := &costMeter{start: time.Now()}
	c.cpu, c.cpuOK = threadCPU()
	return c
}

// done ends the measurement of a poll that saw conns connections.
func (c *costMeter) done(conns int) time.Duration {
	defer runtime.UnlockOSThread()
	now, ok := threadCPU()
	if !ok || !c.cpuOK {
		return time.Since(c.start) // no thread clock: wall time, the cautious side
	}
	return time.Duration(now-c.cpu) + time.Duration(conns)*singboxPerConn
}
