package instance

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is still running
// once they are done (go.uber.org/goleak), and prints its stack. Nothing is
// ignored beyond goleak's defaults (the runtime's, os/signal's and the
// testing package's own goroutines): a gVisor stack ends all of its
// goroutines in Close, and every test stops what it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
