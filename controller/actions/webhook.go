package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/alertmanager/template"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// message is Alertmanager's webhook payload, version 4.
type message struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

const maxPayload = 4 << 20

type summary struct {
	Alerts  int            `json:"alerts"`
	Results map[string]int `json:"results"`
}

// ServeHTTP is POST /api/v1/alerts. A malformed payload is 400 and an
// unknown action or target 200, since delivering them again cannot help;
// only temporary failures (database or Prometheus unreachable, rate limit)
// answer 503, so that Alertmanager retries.
func (a *Actor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	msg, err := decodeMessage(w, r)
	if err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, apiclient.Envelope{Error: &apiclient.Error{Code: apiclient.CodeBadRequest, Message: err.Error()}})
		return
	}
	if msg.TruncatedAlerts > 0 {
		a.Log.WithField("truncated", msg.TruncatedAlerts).Warn("Alertmanager truncated alerts; set max_alerts: 0 on the controller's receiver")
	}
	sum := summary{Alerts: len(msg.Alerts), Results: map[string]int{}}
	retry := false
	for _, al := range msg.Alerts {
		out := a.Handle(r.Context(), Alert{Status: al.Status, Labels: al.Labels, Fingerprint: al.Fingerprint, StartsAt: al.StartsAt})
		sum.Results[out.Result]++
		if out.Err != nil {
			a.Log.WithFields(logrus.Fields{"alertname": al.Labels["alertname"], "fingerprint": al.Fingerprint}).WithError(out.Err).Error("handling alert")
		}
		retry = retry || out.Retry
	}
	status := http.StatusOK
	if retry {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, sum)
}

func decodeMessage(w http.ResponseWriter, r *http.Request) (*message, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPayload)
	var msg message
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("malformed webhook payload: %w", err)
	}
	if msg.Data == nil || msg.Version != "4" {
		return nil, fmt.Errorf("not an Alertmanager webhook payload of version 4")
	}
	for i, al := range msg.Alerts {
		if al.Status != "firing" && al.Status != "resolved" {
			return nil, fmt.Errorf("alert %d: status %q is neither firing nor resolved", i, al.Status)
		}
		if al.Fingerprint == "" || al.StartsAt.IsZero() {
			return nil, fmt.Errorf("alert %d: fingerprint and startsAt are required", i)
		}
	}
	return &msg, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
