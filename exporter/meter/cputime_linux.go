package meter

import "golang.org/x/sys/unix"

// threadCPU is the CPU time the calling OS thread has used. A poll runs
// locked to its thread, so the difference across it is what the poll cost
// the exporter, however busy the machine is: wall time would stretch with
// every other process that competes for the cores, and a node busy moving
// traffic would then poll too seldom to tell its users apart.
func threadCPU() (ns int64, ok bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}
