package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/faithif/systemd"
)

// readyFDEnv names the file descriptor on which a background instance tells
// the command that started it that it is ready.
const readyFDEnv = "FAITHIF_READY_FD"

// daemonize runs `faithif create ARGS -f` for interface name in a new session with its log in
// the run directory, and returns once that instance is ready, or with its
// error if it failed to start.
func daemonize(name string, args []string, stdout, stderr io.Writer) error {
	if err := faithif.CheckCreate(name); err != nil {
		return err
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	logPath := runDir.LogPath(name)
	logFile, err := runDir.OpenLog(name) // a trusted run dir; a symbolic link is refused
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer logFile.Close()
	start, _ := logFile.Seek(0, io.SeekEnd)

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer r.Close()
	cmd := exec.Command(self, append(append([]string{"create"}, args...), "--foreground")...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("create %s: start: %w", name, err)
	}

	// The instance answers on the pipe: "ready", or "error: MESSAGE" with
	// its own startup error (the log file may be shared with an instance of
	// the same name that won a race). Nothing at all means it crashed.
	lineCh := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
		lineCh <- strings.TrimSuffix(line, "\n")
	}()
	select {
	case line := <-lineCh:
		if line == "ready" {
			// Under systemd (Type=notify), the instance is the service's
			// main process from now on.
			systemd.NewNotifier(nil).ReadyAs(cmd.Process.Pid, fmt.Sprintf("%s created (pid %d, log %s)", name, cmd.Process.Pid, logPath))
			fmt.Fprintf(stdout, "%s created (pid %d, log %s)\n", name, cmd.Process.Pid, logPath)
			cmd.Process.Release()
			printWarnings(runDir, name, stderr)
			return nil
		}
		cmd.Wait()
		if msg, ok := strings.CutPrefix(line, "error: "); ok {
			return reportedError{errors.New(unescapeLine(msg))}
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
	}
	return fmt.Errorf("%s", startupError(logFile, start, name))
}

// printWarnings prints, once, what the new instance says keeps it from
// relaying as the operator would expect (keepfaith 0, IPv6 forwarding off);
// the background instance logs them to its log file, which nobody reads
// at this point.
func printWarnings(runDir faithif.RunDir, name string, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.Client{Path: runDir.SocketPath(name)}.Status(ctx)
	if err != nil {
		return // it answered "ready"; a status that fails now is for show to report
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(stderr, "faithif: warning: %s: %s\n", name, w)
	}
}

// reportedError is an error whose message is complete as it is.
type reportedError struct{ error }

// inBackground reports whether this process is a background instance
// started by daemonize.
func inBackground() bool { return os.Getenv(readyFDEnv) == "3" }

// notifyFailed tells the command that started this instance why it could
// not start.
func notifyFailed(err error) {
	f := os.NewFile(3, "ready")
	f.WriteString("error: " + escapeLine(err.Error()) + "\n")
	f.Close()
}

func escapeLine(s string) string   { return strings.ReplaceAll(s, "\n", "\\n") }
func unescapeLine(s string) string { return strings.ReplaceAll(s, "\\n", "\n") }

// startupError returns what a failed background instance wrote to its log
// from offset from on (read through the descriptor daemonize opened, not
// the path again).
func startupError(log *os.File, from int64, name string) string {
	b, _ := io.ReadAll(io.NewSectionReader(log, from, 64<<10))
	msg := strings.TrimSpace(string(b))
	msg = strings.TrimPrefix(msg, "faithif: ")
	if msg == "" {
		return fmt.Sprintf("create %s: the background instance failed to start (see %s)", name, log.Name())
	}
	return msg
}

// notifyReady tells whoever waits for this instance that it is ready: the
// command that started it in the background (which then tells the service
// manager, if any, naming this process as the main one), or else the
// service manager (READY=1 with status).
func notifyReady(n *systemd.Notifier, status string) {
	if !inBackground() {
		n.Ready(status)
		return
	}
	f := os.NewFile(3, "ready")
	f.WriteString("ready\n")
	f.Close()
	os.Unsetenv(readyFDEnv)
	n.ReadyElsewhere()
}

// readyStatus is the STATUS= of an instance that is ready: its prefixes,
// and what keeps it from relaying as expected, if anything (keepfaith 0,
// IPv6 forwarding off), which systemctl status then shows.
func readyStatus(st status.Status) string {
	s := fmt.Sprintf("%s up: prefixes %s", st.Name, strings.Join(st.Prefixes, " "))
	for _, w := range st.Warnings {
		s += "; " + w
	}
	return s
}

// backgroundLog returns the writer of a background instance's log in
// runDir: the file daemonize opened (its standard error), written through
// a size-rotated writer (RunDir.LogWriter). What the Go runtime writes
// itself (a crash) still goes to the file opened at the start, which may
// have been renamed by then.
func backgroundLog(runDir faithif.RunDir, name string) (io.WriteCloser, error) {
	w, err := runDir.LogWriter(name)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return w, nil
}

// logFinalError writes the error a background instance ends with, once it
// was ready, to its log (where run would have printed it, had the log not
// been rotated since) and returns it as reported. Before ready the error
// goes to the starting command instead (notifyFailed).
func logFinalError(log io.Writer, err error) error {
	if err == nil || inBackground() {
		return err
	}
	fmt.Fprintf(log, "faithif: %s\n", err)
	return silentError{err}
}
