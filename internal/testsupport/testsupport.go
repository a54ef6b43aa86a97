// Package testsupport holds small helpers the tests of several packages
// share, so that each has one definition.
package testsupport

import (
	"bytes"
	"sync"
)

// SyncBuffer collects a process's output while a test reads it: an
// exec.Cmd writes from its own goroutines, which a bare bytes.Buffer does
// not survive under the race detector.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
