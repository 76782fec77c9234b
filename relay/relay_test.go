package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/faithif/faithif/relay/flow"
)

func TestDialFailureAnswers(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp4", Err: os.NewSyscallError("connect", errno)}
	}
	timeout := &net.OpError{Op: "dial", Net: "tcp4", Err: timeoutError{}}
	tests := []struct {
		err     error
		reason  string
		answer  flow.Refusal
		outcome Outcome
	}{
		{opErr(syscall.ECONNREFUSED), "connection-refused", flow.RefuseReset, OutcomeRefused},
		// The server's RST during the connect is a refusal, not an error.
		{opErr(syscall.ECONNRESET), "connection-refused", flow.RefuseReset, OutcomeRefused},
		{opErr(syscall.EHOSTUNREACH), "host-unreachable", flow.RefuseAddrUnreachable, OutcomeUnreachable},
		{opErr(syscall.ENETUNREACH), "network-unreachable", flow.RefuseNoRoute, OutcomeUnreachable},
		{opErr(syscall.EACCES), "prohibited", flow.RefuseProhibited, OutcomeUnreachable},
		{opErr(syscall.EPERM), "prohibited", flow.RefuseProhibited, OutcomeUnreachable},
		{opErr(syscall.EINVAL), "blackhole", flow.RefuseAddrUnreachable, OutcomeUnreachable},
		{timeout, "timeout", flow.RefuseAddrUnreachable, OutcomeTimedOut},
		{fmt.Errorf("dial: %w", context.Canceled), "shutdown", flow.RefuseReset, OutcomeError},
		{opErr(syscall.EMFILE), "fd-limit", flow.RefuseReset, OutcomeLimited},
		{opErr(syscall.ENFILE), "fd-limit", flow.RefuseReset, OutcomeLimited},
		{opErr(syscall.EADDRNOTAVAIL), "error", flow.RefuseReset, OutcomeError},
		{errors.New("something else"), "error", flow.RefuseReset, OutcomeError},
	}
	for _, tt := range tests {
		reason, answer := dialFailure(tt.err)
		if reason != tt.reason || answer != tt.answer {
			t.Errorf("dialFailure(%v) = %s, %s; want %s, %s", tt.err, reason, answer, tt.reason, tt.answer)
		}
		if o := outcomeOf(reason); o != tt.outcome {
			t.Errorf("outcomeOf(%s) = %s; want %s", reason, o, tt.outcome)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestOutcomeNames(t *testing.T) {
	seen := map[string]bool{}
	for o := range numOutcomes {
		if o.String() == "" || seen[o.String()] {
			t.Errorf("outcome %d: name %q empty or repeated", o, o.String())
		}
		seen[o.String()] = true
	}
	for _, r := range []string{"denied", "limit"} {
		if o := outcomeOf(r); o == OutcomeError {
			t.Errorf("outcomeOf(%s) = error", r)
		}
	}
	if endIndex(EndServerReset) != 2 || ends[endIndex(EndIdleTimeout)] != EndIdleTimeout {
		t.Error("endIndex does not index Ends")
	}
}
