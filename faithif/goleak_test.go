package faithif

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is still running
// once they are done (go.uber.org/goleak), and prints its stack. Beyond
// goleak's defaults (the runtime's, os/signal's and the testing package's
// own goroutines) only one is ignored: the goroutine that
// gopkg.in/natefinch/lumberjack.v2 (v2.2.1) starts for each log writer on
// its first write, to remove old logs, and never ends (Close does not stop
// it); a background instance has one log writer, for as long as it runs.
// A gVisor stack ends all of its goroutines in Close, and every test stops
// what it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
