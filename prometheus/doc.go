// Package prometheus holds the shipped Prometheus, Alertmanager and blackbox
// exporter configuration, and the tests that check it with the real
// promtool, amtool, Prometheus and Alertmanager. There is no Go code to
// import.
package prometheus
