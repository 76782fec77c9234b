// Package soak holds faithif's soak test: connection churn through one
// faithif in a namespace lab (package netlab) for a bounded time, then a
// check that the process comes back to where it started.
//
// The churn mixes many short echo connections (the client half-closes),
// connections reset by the client and by the server, connections the server
// half-closes first, idle flows (some outlive faithif's idle timeout, which
// resets them), and a few bulk transfers. Before it, a warm-up of the same
// workload fills the pools; the baseline is read after it. After the churn,
// every connection is closed and the test waits for `faithif show --json` to
// report no open flow and no handshake, and for faithif's goroutines
// (go_goroutines) and open descriptors (process_open_fds) to come back to
// the baseline; its resident memory (process_resident_memory_bytes) may stay
// above it by a stated slack. All three are read from faithif's own
// Prometheus endpoint (--metrics). It prints a table and fails if anything
// did not come back, or if a connection saw something it should not have
// (a short echo, an EOF where a reset was due).
//
// Knobs (environment): SOAK_SECONDS (the churn's length; `make soak` runs
// 600, `make test` and so CI 60; unset, the test skips, so that it does not
// run beside the end-to-end tests of `go test ./test/...`), SOAK_WORKERS
// (16 connection loops),
// SOAK_RATE (200 new connections per second at most), SOAK_IDLE (200 idle
// flows held at most), SOAK_BULK (2 bulk loops), SOAK_RSS_SLACK_MB (32).
//
// Run it with:
//
//	sudo SOAK_SECONDS=600 go test -count=1 -v -timeout 30m ./test/soak/
package soak
