// Package metrics serves what a network team watches of a faithif process
// over HTTP: Prometheus metrics on /metrics, /healthz (the process is alive)
// and /readyz (every interface up, keepfaith=1, every stack running).
//
// Counters are read from the running instances when Prometheus scrapes, so
// the packet and flow paths never touch a metric; only the IPv4 dial
// latency is observed as it happens, into a histogram. Which counter is which
// metric, with its help and labels, is written beside the counter itself and
// read through package status.
package metrics
