package dns64

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is still running
// once they are done (go.uber.org/goleak): Close stops every server and
// abandons the upstream queries in flight, and every test stops what it
// starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
