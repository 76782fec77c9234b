// Package systemd is faithif's side of running as a systemd service: it
// tells the service manager how the process is doing (sd_notify(3):
// READY=1, RELOADING=1, STOPPING=1, STATUS=) through
// github.com/coreos/go-systemd/v22/daemon, and gives each line written to a
// standard error connected to the journal its priority, as sd-daemon(3)
// describes ("<3>" for an error), so that journald records it.
package systemd
