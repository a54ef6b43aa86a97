// Package proctest is being folded into testsupport (TEMPORARY: removed
// once the soak's files move over).
package proctest

import "github.com/boxfleet/boxfleet/internal/testsupport"

type Proc = testsupport.Proc

const TailBytes = testsupport.TailBytes

var (
	Start = testsupport.Start
	Tail  = testsupport.Tail
	Until = testsupport.Until
)
