package meter

import (
	"runtime"
	"runtime/metrics"
	"time"
)

// singboxPerConn is what one connection in a /connections answer is taken
// to cost sing-box to render (it builds a map per connection and marshals
// it). TestLoadSingbox measured 11.8 µs and 20.4 µs per connection in two
// runs on this project's 2-core test machine: the worse one is taken, since
// a small VPS core is no faster.
// The budget covers sing-box's share too, and the exporter cannot time
// another process's work on its behalf.
const singboxPerConn = 20 * time.Microsecond

// costMeter measures what one poll costs in CPU: the exporter's own time on
// the thread that reads and meters the snapshot and writes the state, the
// garbage collection that work causes on other threads, plus sing-box's
// estimated share. Polls are paced by this cost, never by their wall time,
// which grows with everything else that competes for the cores.
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

// done ends the measurement of a poll that saw conns connections. gc is
// the process's garbage-collection CPU when the previous poll ended; all of
// it since is charged to polling, which allocates nearly everything the
// exporter does on a busy node, and it is updated.
func (c *costMeter) done(conns int, gc *time.Duration) time.Duration {
	defer runtime.UnlockOSThread()
	now, ok := threadCPU()
	gcNow := gcCPU()
	gcSince := max(gcNow-*gc, 0)
	*gc = gcNow
	if !ok || !c.cpuOK {
		return time.Since(c.start) // no thread clock: wall time, the cautious side
	}
	return time.Duration(now-c.cpu) + gcSince + time.Duration(conns)*singboxPerConn
}

var gcSample = []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}

// gcCPU is the runtime's estimate of the CPU the garbage collector has used
// in this process, mark assists included.
func gcCPU() time.Duration {
	metrics.Read(gcSample)
	if gcSample[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return time.Duration(gcSample[0].Value.Float64() * float64(time.Second))
}
