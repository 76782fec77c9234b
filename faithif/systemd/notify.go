package systemd

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier tells the service manager about the process's state changes
// (sd_notify(3)): ready, reloading and ready again, stopping, each with a
// STATUS= line that `systemctl status` shows. Without NOTIFY_SOCKET in the
// environment it sends nothing. A nil *Notifier does nothing. It is safe
// for concurrent use.
//
// Reloads nest: while one is in progress (say, the appliance rereading
// every interface's access file) another (one interface's) sends nothing,
// so the manager sees one RELOADING=1 and one READY=1. Nothing is sent
// about reloads before the process is ready, nor anything but STATUS= once
// it is stopping.
type Notifier struct {
	log *slog.Logger

	mu       sync.Mutex
	ready    bool // READY=1 was sent, by this process or for it
	reloads  int  // reloads in progress
	stopping bool // STOPPING=1 was sent
}

// NewNotifier returns a Notifier that logs what it sends at debug level,
// and failures to send as warnings, to log (nil: slog.Default()).
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	return &Notifier{log: log}
}

// Ready says that the process is ready: READY=1.
func (n *Notifier) Ready(status string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready || n.stopping {
		return
	}
	n.ready = true
	n.send("READY=1", status)
}

// ReadyAs says that the process pid is ready and is the service's main
// process from now on: READY=1 with MAINPID=pid. It is what a command that
// started pid in the background sends before it exits.
func (n *Notifier) ReadyAs(pid int, status string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ready = true
	n.send(fmt.Sprintf("READY=1\nMAINPID=%d", pid), status)
}

// ReadyElsewhere records, sending nothing, that the service manager was told
// of this process's readiness by another (the command that started it in
// the background, with ReadyAs), so that a later reload is announced.
func (n *Notifier) ReadyElsewhere() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ready = true
}

// Reloading says that a reload begins: RELOADING=1, with MONOTONIC_USEC=,
// the time of the message on CLOCK_MONOTONIC, which systemd 253 and later
// require with it. Each call must be followed by one of Reloaded.
func (n *Notifier) Reloading(status string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reloads++
	if n.reloads > 1 || !n.ready || n.stopping {
		return
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		n.log.Warn("sd_notify: reading CLOCK_MONOTONIC", "error", err.Error())
	}
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000), status)
}

// Reloaded says that the reload Reloading announced is over, whatever its
// outcome (the status says which): READY=1 again.
func (n *Notifier) Reloaded(status string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reloads == 0 {
		return
	}
	n.reloads--
	if n.reloads > 0 || !n.ready || n.stopping {
		return
	}
	n.send("READY=1", status)
}

// Stopping says that the process is stopping (draining its flows):
// STOPPING=1, once.
func (n *Notifier) Stopping(status string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return
	}
	n.stopping = true
	n.send("STOPPING=1", status)
}

// send sends state and, if not empty, STATUS=status (on one line).
// Callers hold n.mu, so that messages leave in the order of the state
// changes.
func (n *Notifier) send(state, status string) {
	if status != "" {
		state += "\nSTATUS=" + strings.Join(strings.Fields(status), " ")
	}
	sent, err := daemon.SdNotify(false, state)
	switch {
	case err != nil:
		n.log.Warn("sd_notify failed", "state", state, "error", err.Error())
	case sent:
		n.log.Debug("sd_notify", "state", state)
	}
}
