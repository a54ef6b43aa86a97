// Package alerts holds boxfleet's policies: Prometheus alerting and
// recording rules (*.rules.yml), their promtool unit tests (tests/), and the
// Go tests that run both through the real promtool. There is no Go code to
// import; the package exists so that `go test ./...` checks the rules.
package alerts
