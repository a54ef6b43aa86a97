//go:build !linux

package meter

// threadCPU is not measured here; polls are then paced by wall time.
func threadCPU() (ns int64, ok bool) { return 0, false }
