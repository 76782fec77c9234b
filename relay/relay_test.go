package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestDialFailureAnswers(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp4", Err: os.NewSyscallError("connect", errno)}
	}
	timeout := &net.OpError{Op: "dial", Net: "tcp4", Err: timeoutError{}}
	tests := []struct {
		err    error
		reason string
		answer Refusal
	}{
		{opErr(syscall.ECONNREFUSED), "connection-refused", RefuseReset},
		{opErr(syscall.EHOSTUNREACH), "host-unreachable", RefuseAddrUnreachable},
		{opErr(syscall.ENETUNREACH), "network-unreachable", RefuseNoRoute},
		{opErr(syscall.EACCES), "prohibited", RefuseProhibited},
		{opErr(syscall.EPERM), "prohibited", RefuseProhibited},
		{opErr(syscall.EINVAL), "blackhole", RefuseAddrUnreachable},
		{timeout, "timeout", RefuseAddrUnreachable},
		{fmt.Errorf("dial: %w", context.Canceled), "shutdown", RefuseReset},
		{opErr(syscall.EMFILE), "fd-limit", RefuseReset},
		{opErr(syscall.ENFILE), "fd-limit", RefuseReset},
		{opErr(syscall.EADDRNOTAVAIL), "error", RefuseReset},
		{errors.New("something else"), "error", RefuseReset},
	}
	for _, tt := range tests {
		reason, answer := dialFailure(tt.err)
		if reason != tt.reason || answer != tt.answer {
			t.Errorf("dialFailure(%v) = %s, %s; want %s, %s", tt.err, reason, answer, tt.reason, tt.answer)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
