package attribution

import "time"

// SettleNow gives out, at once, the remainder that is still waiting for an
// explanation after the snapshot requested at the given time was applied:
// to the logged connections that had not yet had time to appear in it, or,
// when there are none, as unattributed. That is what the engine would do
// after its wait; a flush cannot wait, because sing-box is about to stop
// and the next snapshot would belong to another instance. Afterwards users
// plus unattributed add up to the node total.
//
// Connections logged after the snapshot are left for the next one: their
// bytes are not in this remainder.
func (e *Engine) SettleNow(requested time.Time) Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := Result{Owners: map[Owner]Traffic{}}
	if !e.started {
		return r
	}
	cands := e.youngBirths(requested)
	if len(cands) == 0 || e.lost {
		// Without the log stream's every line the births heard of are not
		// all the window's (see LogDown).
		e.declare(&r)
		return r
	}
	e.settle(cands, &r)
	return r
}

// youngBirths takes, as candidates, the connections logged by the requested
// time that are not open in the snapshot: after Apply these are the ones
// logged too recently to be judged unseen, and a flush judges them now.
func (e *Engine) youngBirths(requested time.Time) []candidate {
	open := make(map[key]bool, len(e.conns))
	for _, t := range e.conns {
		open[key{t.Inbound, t.Source}] = true
	}
	return e.unseenBirths(open, requested, 0)
}
