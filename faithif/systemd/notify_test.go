package systemd

import (
	"bytes"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket listens on a NOTIFY_SOCKET of its own, as systemd does, and
// sets the variable for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// received returns the messages sent to c, up to a last one the test sends
// itself ("END"): so that nothing sent before it can be missed, whatever
// the timing.
func received(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	end, err := net.DialUnix("unixgram", nil, c.LocalAddr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer end.Close()
	if _, err := end.Write([]byte("END")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", msgs, err)
		}
		if string(buf[:n]) == "END" {
			return msgs
		}
		msgs = append(msgs, string(buf[:n]))
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestNotifierSequence: ready, a reload with a nested one (sent once),
// stopping (sent once); nothing about reloads before ready or once
// stopping; MONOTONIC_USEC is the monotonic clock when RELOADING=1 was
// sent.
func TestNotifierSequence(t *testing.T) {
	c := notifySocket(t)
	n := NewNotifier(slog.New(slog.DiscardHandler))
	n.Reloading("too early")
	n.Reloaded("too early")
	n.Ready("faith0 up")
	n.Ready("again") // once
	before := monotonicUsec(t)
	n.Reloading("reloading all")
	n.Reloading("reloading faith0")
	n.Reloaded("faith0 reloaded")
	n.Reloaded("all reloaded")
	after := monotonicUsec(t)
	n.Reloading("reloading\nover two lines")
	n.Stopping("draining")
	n.Reloaded("reloaded while stopping")
	n.Stopping("again")
	n.Ready("ready while stopping")
	n.Reloaded("unbalanced") // ignored

	msgs := received(t, c)
	if len(msgs) < 2 {
		t.Fatalf("messages %q", msgs)
	}
	mono, ok := strings.CutPrefix(msgs[1], "RELOADING=1\nMONOTONIC_USEC=")
	usec, _, _ := strings.Cut(mono, "\n")
	if u, err := strconv.ParseInt(usec, 10, 64); !ok || err != nil || u < before || u > after {
		t.Errorf("second message %q: want RELOADING=1 with MONOTONIC_USEC between %d and %d", msgs[1], before, after)
	}
	for i := range msgs {
		msgs[i] = maskMonotonic(msgs[i])
	}
	want := []string{
		"READY=1\nSTATUS=faith0 up",
		"RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading all",
		"READY=1\nSTATUS=all reloaded",
		"RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading over two lines",
		"STOPPING=1\nSTATUS=draining",
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("messages:\n%q\nwant:\n%q", msgs, want)
	}
}

// maskMonotonic replaces the value of MONOTONIC_USEC in m, if any, by N.
func maskMonotonic(m string) string {
	head, rest, ok := strings.Cut(m, "MONOTONIC_USEC=")
	if !ok {
		return m
	}
	_, tail, _ := strings.Cut(rest, "\n")
	return head + "MONOTONIC_USEC=N\n" + tail
}

// TestNotifierBackground: the command that started a background instance
// names it as the main process; the instance, told that it was announced,
// sends its reloads.
func TestNotifierBackground(t *testing.T) {
	c := notifySocket(t)
	NewNotifier(nil).ReadyAs(4242, "faith0 created")
	n := NewNotifier(slog.New(slog.DiscardHandler))
	n.ReadyElsewhere()
	n.Reloading("")
	n.Reloaded("")
	msgs := received(t, c)
	if len(msgs) != 3 || msgs[0] != "READY=1\nMAINPID=4242\nSTATUS=faith0 created" ||
		!strings.HasPrefix(msgs[1], "RELOADING=1\nMONOTONIC_USEC=") || msgs[2] != "READY=1" {
		t.Errorf("messages %q; want READY=1 with MAINPID=4242, then RELOADING=1 and READY=1", msgs)
	}
}

// TestNotifierNoSocket: without NOTIFY_SOCKET, and with a nil Notifier,
// nothing is sent and nothing fails.
func TestNotifierNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var logs bytes.Buffer
	n := NewNotifier(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	n.Ready("x")
	n.Stopping("y")
	if logs.Len() != 0 {
		t.Errorf("logged %q without NOTIFY_SOCKET", logs.String())
	}
	var none *Notifier
	none.Ready("x")
	none.ReadyAs(1, "x")
	none.ReadyElsewhere()
	none.Reloading("x")
	none.Reloaded("x")
	none.Stopping("x")
}

// TestNotifierSendFails: a NOTIFY_SOCKET nobody listens on is a warning,
// naming the message, and the process goes on.
func TestNotifierSendFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	var logs bytes.Buffer
	n := NewNotifier(slog.New(slog.NewTextHandler(&logs, nil)))
	n.Ready("faith0 up")
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "sd_notify failed") || !strings.Contains(s, `READY=1`) {
		t.Errorf("log %q; want a warning naming READY=1", s)
	}
}
