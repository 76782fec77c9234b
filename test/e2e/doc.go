// Package e2e holds faithif's end-to-end tests. Each test builds its own
// three-namespace lab with package netlab (an IPv6-only client, a router
// running the faithif binary, an IPv4-only server), opens real kernel sockets
// in the client and server namespaces, and checks what the client and the
// server see through faithif.
//
// The tests need root. They fail (never skip) when run without it or when a
// tool they need is missing. The binary under test is $FAITHIF_BIN, or one
// built from ./cmd/faithif for the test run.
//
// Each file holds the tests of one feature (rules_test.go: the access
// rules; refuse_test.go: refused flows; limits_test.go: per-client and
// descriptor limits; ...) and the helpers only it uses; helpers_test.go
// holds the helpers that several files use.
//
// Run them with:
//
//	sudo go test -count=1 -timeout 12m ./test/e2e/
package e2e
