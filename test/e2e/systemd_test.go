package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/test/netlab"
)

// Tests of faithif under systemd: readiness, reload and stop notifications
// (sd_notify, received on a NOTIFY_SOCKET the test makes, as systemd
// does), log priorities for the journal, and the background log's
// rotation.

// notifyMsg is one notification and the pid that sent it (SCM_CREDENTIALS,
// as systemd reads it).
type notifyMsg struct {
	pid  int
	text string
}

// notifySocket is a NOTIFY_SOCKET: a unixgram socket that receives the
// senders' credentials.
type notifySocket struct {
	path string
	msgs chan notifyMsg
}

// listenNotify makes a NOTIFY_SOCKET in a directory of its own (a short
// path: the names of unix sockets are limited to 108 bytes), removed with
// the test.
func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "faithif-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan notifyMsg, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{pid: -1, text: string(buf[:n])}
			if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, cm := range cms {
					if cred, err := unix.ParseUnixCredentials(&cm); err == nil {
						m.pid = int(cred.Pid)
					}
				}
			}
			s.msgs <- m
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

// env returns the environment entry that points faithif at s.
func (s *notifySocket) env() string { return "NOTIFY_SOCKET=" + s.path }

// next returns the next notification, failing the test if none comes
// within 20 s (a hang guard).
func (s *notifySocket) next(t *testing.T) notifyMsg {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("no notification within 20 s")
	}
	return notifyMsg{}
}

// monoRE matches the MONOTONIC_USEC of a RELOADING=1 notification.
var monoRE = regexp.MustCompile(`MONOTONIC_USEC=([0-9]+)`)

// expect checks that the next notification is want, sent by pid. A
// MONOTONIC_USEC=N in want stands for a value of CLOCK_MONOTONIC, in
// microseconds, no earlier than since.
func (s *notifySocket) expect(t *testing.T, pid int, since int64, want string) {
	t.Helper()
	m := s.next(t)
	got := m.text
	if sm := monoRE.FindStringSubmatch(got); sm != nil {
		usec, _ := strconv.ParseInt(sm[1], 10, 64)
		if now := monotonicUsec(t); usec < since || usec > now {
			t.Errorf("%q: MONOTONIC_USEC not between %d and %d", got, since, now)
		}
		got = monoRE.ReplaceAllString(got, "MONOTONIC_USEC=N")
	}
	if got != want || m.pid != pid {
		t.Errorf("notification %q from pid %d; want %q from pid %d", m.text, m.pid, want, pid)
	}
}

// expectNoMore checks that nothing more was sent: the test sends a last
// message of its own, which must be the next one.
func (s *notifySocket) expectNoMore(t *testing.T) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("END")); err != nil {
		t.Fatal(err)
	}
	for m := s.next(t); m.text != "END"; m = s.next(t) {
		t.Errorf("unexpected notification %q from pid %d", m.text, m.pid)
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

// TestNotifyCreate runs "faithif create -f" as a Type=notify service:
// READY=1 once the interface relays (show answers then; its status says
// that keepfaith is 0), RELOADING=1 with
// MONOTONIC_USEC and READY=1 around "faithif reload" and around a SIGHUP
// with a broken file (whose status says so), STOPPING=1 at destroy, each
// with its STATUS=, from faithif's own pid, and nothing else.
func TestNotifyCreate(t *testing.T) {
	lab := netlab.New(t)
	ns := listenNotify(t)
	rules := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
	writeFile(t, rules, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	f := lab.Start(t, netlab.StartSpec{
		Env:  append(lab.Env(), ns.env()),
		Argv: []string{netlab.Binary(t), "create", "faith0", "--prefix", netlab.FaithPrefix, "--access", rules, "-f"},
	})
	pid := f.Pid()

	// Its status says that nothing is captured yet (keepfaith 0).
	if m := ns.next(t); m.pid != pid || !strings.HasPrefix(m.text, "READY=1\nSTATUS=faith0 up: prefixes "+netlab.FaithPrefix+"; ") ||
		!strings.Contains(m.text, "; keepfaith is 0: nothing is captured") || strings.Count(m.text, "\n") != 1 {
		t.Errorf("first notification %q from pid %d; want READY=1 from pid %d, with the prefix and keepfaith 0 in its status", m.text, m.pid, pid)
	}
	if _, err := lab.Show(); err != nil {
		t.Errorf("show right after READY=1: %v", err)
	}

	since := monotonicUsec(t)
	if r := lab.Faithif("reload", "faith0"); r.ExitCode != 0 {
		t.Fatalf("reload: %s", r)
	}
	ns.expect(t, pid, since, "RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=faith0: reloading "+rules)
	ns.expect(t, pid, 0, "READY=1\nSTATUS=faith0: 1 rule from "+rules)

	writeFile(t, rules, "2001:db8:1::/64 allow 192.0.2.0/24\n")
	since = monotonicUsec(t)
	if err := f.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ns.expect(t, pid, since, "RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=faith0: reloading "+rules)
	m := ns.next(t)
	if !strings.HasPrefix(m.text, "READY=1\nSTATUS=reload faith0: "+rules+":1: ") || !strings.HasSuffix(m.text, "(the old rules stay)") || m.pid != pid {
		t.Errorf("after a broken file: %q from pid %d; want READY=1 with the file's error from pid %d", m.text, m.pid, pid)
	}

	f.ExpectExit()
	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	ns.expect(t, pid, 0, "STOPPING=1\nSTATUS=faith0 draining: 0 open flows, grace 10s (destroy)")
	if !f.Wait(10 * time.Second) {
		t.Fatalf("faithif still running 10 s after destroy")
	}
	ns.expectNoMore(t)
}

// TestNotifyBackgroundCreate: "faithif create" without -f, as a
// Type=notify service's command: the command itself says READY=1 once the
// instance it started is ready, naming it as the main process (MAINPID=),
// and exits; the instance says STOPPING=1 at destroy.
func TestNotifyBackgroundCreate(t *testing.T) {
	lab := netlab.New(t)
	ns := listenNotify(t)
	ctx := testCtx(t, time.Minute)
	cmd := lab.Router.Command(ctx, append(lab.Env(), ns.env()), netlab.Binary(t), "create", "faith0", "--prefix", netlab.FaithPrefix)
	r := netlab.RunCommand(cmd)
	m := createdRE.FindStringSubmatch(r.Stdout)
	if r.ExitCode != 0 || m == nil {
		t.Fatalf("create: %s", r)
	}
	child, _ := strconv.Atoi(m[2])
	ns.expect(t, cmd.Process.Pid, 0, fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=faith0 created (pid %d, log %s)", child, child, m[3]))

	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	ns.expect(t, child, 0, "STOPPING=1\nSTATUS=faith0 draining: 0 open flows, grace 10s (destroy)")
	if !netlab.WaitProcessGone(child, 10*time.Second) {
		t.Fatalf("instance %d still running 10 s after destroy", child)
	}
	ns.expectNoMore(t)
}

// TestNotifyRun: the appliance says READY=1 once every interface is up;
// a SIGHUP (every access file) and a "faithif reload faith0" (one) are
// each one reload; SIGTERM is one STOPPING=1, however many interfaces
// drain.
func TestNotifyRun(t *testing.T) {
	lab := netlab.New(t)
	ns := listenNotify(t)
	prepareRunRouter(t, lab)
	dir := netlab.TempDir(t, "conf")
	rules := filepath.Join(dir, "faithd.conf")
	writeFile(t, rules, "2001:db8:1::/64 permit 192.0.2.0/24\n2001:db8:2::/64 permit 192.0.2.0/24\n")
	conf := filepath.Join(dir, "faithif.conf")
	writeFile(t, conf, runConf(`rules = "`+rules+`"`))
	f := lab.Start(t, netlab.StartSpec{
		Env:  append(lab.Env(), ns.env()),
		Argv: []string{netlab.Binary(t), "run", "--config", conf},
	})
	pid := f.Pid()
	ns.expect(t, pid, 0, "READY=1\nSTATUS=up: faith0, faith1")

	since := monotonicUsec(t)
	if err := f.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ns.expect(t, pid, since, "RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading the access files")
	ns.expect(t, pid, 0, "READY=1\nSTATUS=access files reloaded")

	since = monotonicUsec(t)
	if r := lab.Faithif("reload", "faith0"); r.ExitCode != 0 {
		t.Fatalf("reload faith0: %s", r)
	}
	ns.expect(t, pid, since, "RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=faith0: reloading "+rules)
	ns.expect(t, pid, 0, "READY=1\nSTATUS=faith0: 2 rules from "+rules)

	stopRun(t, f, 10*time.Second)
	ns.expect(t, pid, 0, "STOPPING=1\nSTATUS=stopping: terminated")
	ns.expectNoMore(t)
}

// journalStream is a shell command that sets JOURNAL_STREAM to its
// standard error's device and inode, as systemd does for a service whose
// output goes to the journal, and runs its arguments.
const journalStream = `JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"`

// TestJournalPriorities: with standard error connected to the journal
// (JOURNAL_STREAM names it), every line faithif writes starts with its
// priority, log records by their level and the command's own errors as 3,
// and log lines have no time (the journal has its own); with
// JOURNAL_STREAM naming another file, nothing changes.
func TestJournalPriorities(t *testing.T) {
	lab := netlab.New(t)
	bin := netlab.Binary(t)
	f := lab.Start(t, netlab.StartSpec{
		Argv:  []string{"sh", "-c", journalStream, "sh", bin, "create", "faith0", "--prefix", netlab.FaithPrefix, "-f"},
		Ready: func(line string) bool { return strings.Contains(line, "msg=ready") },
	})
	if err := f.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, f.Stderr())
	}
	log := f.Stderr()
	for _, want := range []string{`<4>level=WARN msg="no access rules: every destination`, "<6>level=INFO msg=ready interface=faith0", "<6>level=INFO msg=stopped interface=faith0"} {
		if _, ok := findLine(log, want); !ok {
			t.Errorf("no line %q in:\n%s", want, log)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if !regexp.MustCompile(`^<[3467]>level=`).MatchString(line) || strings.Contains(line, "time=") {
			t.Errorf("line %q: want <PRIORITY>level=... and no time", line)
		}
	}

	// The command's own error and usage hint: priority 3.
	r := netlab.RunCommand(lab.Router.Command(testCtx(t, 20*time.Second), lab.Env(), "sh", "-c", journalStream, "sh",
		bin, "create", "faith0", "--mtu", "100", "-f"))
	want := "<3>faithif: --mtu: mtu 100: must be between 1280 (IPv6 minimum) and 65535\n<3>Run 'faithif create --help' for usage.\n"
	if r.ExitCode != 2 || r.Stderr != want {
		t.Errorf("create --mtu 100 under the journal: %s; want exit 2 and stderr %q", r, want)
	}

	// JOURNAL_STREAM of another file: standard error is not the journal.
	f = lab.Start(t, netlab.StartSpec{
		Env:   append(lab.Env(), "JOURNAL_STREAM=1:1"),
		Argv:  []string{bin, "create", "faith0", "--prefix", netlab.FaithPrefix, "-f"},
		Ready: func(line string) bool { return strings.Contains(line, "msg=ready") },
	})
	if err := f.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if line, ok := findLine(f.Stderr(), "msg=ready"); !ok || !strings.HasPrefix(line, "time=") {
		t.Errorf("with JOURNAL_STREAM of another file: %q; want a plain line with its time", line)
	}
}

// TestBackgroundLogRotated: a background instance's log is rotated by
// size: a log already at the limit is renamed faith0-TIME.log (whole, mode
// kept) at the instance's first line, and the instance logs to a new
// faith0.log, mode 0640, from ready to stopped.
func TestBackgroundLogRotated(t *testing.T) {
	lab := netlab.New(t)
	logPath := filepath.Join(lab.RunDir, "faith0.log")
	const full = faithif.LogMaxMB << 20
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.Truncate(full); err != nil { // sparse: the size is what counts
		t.Fatal(err)
	}
	lf.Close()

	pid := bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix)
	old, err := filepath.Glob(filepath.Join(lab.RunDir, "faith0-*.log"))
	if err != nil || len(old) != 1 {
		t.Fatalf("renamed logs %v (%v); want one", old, err)
	}
	if fi, err := os.Lstat(old[0]); err != nil || fi.Size() != full || fi.Mode() != 0o640 {
		t.Errorf("renamed log %s: %v (%v); want the %d bytes it had, mode 0640", old[0], fi, err, full)
	}
	if fi, err := os.Lstat(logPath); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 || fi.Size() > 64<<10 {
		t.Errorf("new log: %v (%v); want a small regular file, mode 0640", fi, err)
	}
	if _, ok := findLine(readLog(lab, "faith0"), "msg=ready"); !ok {
		t.Errorf("no msg=ready in the new log:\n%s", readLog(lab, "faith0"))
	}
	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	checkDestroyed(t, lab, "faith0", pid)
	if _, ok := findLine(readLog(lab, "faith0"), "msg=stopped"); !ok {
		t.Errorf("no msg=stopped in the new log:\n%s", readLog(lab, "faith0"))
	}
}
