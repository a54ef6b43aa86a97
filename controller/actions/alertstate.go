package actions

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// alertStates is what the rule evaluator says of some alerts now: per
// alertname, action and target (activeKey), firing or pending; an alert
// absent is inactive.
type alertStates map[string]promv1.AlertState

func (s alertStates) add(ls model.LabelSet, state promv1.AlertState) {
	name := string(ls["alertname"])
	// The action label is the rule's; an alert without it (say a rule
	// changed meanwhile) still counts for either action on its target.
	acts := []string{string(ls[ActionLabel])}
	if acts[0] == "" {
		acts = []string{DrainNode, SuspendUser}
	}
	for _, act := range acts {
		var target model.LabelValue
		switch act {
		case DrainNode:
			target = ls[nodeLabel]
		case SuspendUser:
			target = ls[userLabel]
		}
		if target == "" {
			continue
		}
		k := activeKey(name, act, string(target))
		if s[k] != promv1.AlertStateFiring {
			s[k] = state
		}
	}
}

func activeKey(alertname, action, target string) string {
	return alertname + "\x00" + action + "\x00" + target
}

// errNotEvaluated says the evaluator has not run a rule since it started:
// it knows nothing of the rule's alerts yet, which is no evidence either
// way.
var errNotEvaluated = errors.New("not evaluated since the rule evaluator started")

// readAlertStates asks the rule evaluator for the named alerts' states.
//
// The evaluator's own list of rules (/api/v1/rules) is the authority: it
// is its state as it notifies, ahead of the ALERTS series (Prometheus
// sends an evaluation's alerts before it commits the samples; vmalert
// writes ALERTS into VictoriaMetrics by remote write, searchable seconds
// later), and it forgets an alert the moment the alert ends. ALERTS does
// not: a Prometheus restarted while an alert fired never writes a stale
// marker for the series its previous process wrote, so "firing" stays
// readable there for the 5 min lookback after the alert ended, and a
// restarted evaluator's restored alert that ends while still pending is
// dropped without a resolved notification. A rule the list holds but has
// not evaluated since its process started (its lastEvaluation is zero)
// answers errNotEvaluated.
//
// Only for names the list does not hold is ALERTS read: VictoriaMetrics
// without -vmalert.proxyURL answers the list empty, which leaves ALERTS the
// only witness there (with the lookback caveat above).
func (a *Actor) readAlertStates(ctx context.Context, names map[string]bool) (alertStates, error) {
	if a.Prom == nil {
		return nil, errors.New("no Prometheus configured")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := a.Prom.Rules(ctx, nil)
	if err != nil {
		return nil, err
	}
	states := alertStates{}
	listed := map[string]bool{}
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			ar, ok := r.(promv1.AlertingRule)
			if !ok || !names[ar.Name] {
				continue
			}
			if ar.LastEvaluation.IsZero() {
				return nil, fmt.Errorf("rule %s: %w", ar.Name, errNotEvaluated)
			}
			listed[ar.Name] = true
			for _, al := range ar.Alerts {
				if al.State == promv1.AlertStateFiring || al.State == promv1.AlertStatePending {
					states.add(al.Labels, al.State)
				}
			}
		}
	}
	var unlisted []string
	for n := range names {
		if !listed[n] {
			unlisted = append(unlisted, regexp.QuoteMeta(n))
		}
	}
	if len(unlisted) == 0 {
		return states, nil
	}
	slices.Sort(unlisted)
	v, _, _, err := a.Prom.Query(ctx, fmt.Sprintf(`ALERTS{alertname=~%q}`, strings.Join(unlisted, "|")), time.Now())
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("ALERTS query returned %s, not a vector", v.Type())
	}
	for _, s := range vec {
		state := promv1.AlertState(s.Metric["alertstate"])
		if state == promv1.AlertStateFiring || state == promv1.AlertStatePending {
			states.add(model.LabelSet(s.Metric), state)
		}
	}
	return states, nil
}
