package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Tests of what reaches an instance through its control socket, and of
// what happens when the socket is gone.

// TestSocketRemovedStops removes the control socket of a running faith0
// (rm, and a file put in its place): the instance stops as destroy would
// stop it (a warning naming the path, a drain with its grace), removes
// faith0 and exits 0, as wireguard-go does when its UAPI socket goes.
func TestSocketRemovedStops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"Removed", func(t *testing.T, path string) {}},
		{"Replaced", func(t *testing.T, path string) { writeFile(t, path, "not a socket\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			ctx := testCtx(t, time.Minute)
			port := echoServer(t, lab)
			f := lab.StartFaithif(t, "--keepfaith", "--grace", "3s")
			if err := echoRoundTrip(ctx, lab, serverAddr(port), "before the socket goes"); err != nil {
				t.Fatal(err)
			}
			sock := socketPath(lab, "faith0")
			f.ExpectExit()
			if err := os.Remove(sock); err != nil {
				t.Fatal(err)
			}
			tc.replace(t, sock)
			if !f.Wait(10 * time.Second) { // a hang guard: it looks every second
				t.Fatalf("faithif still running 10 s after its control socket was removed\nstderr:\n%s", f.Stderr())
			}
			if err := f.ExitErr(); err != nil {
				t.Errorf("exit after the control socket was removed: %v, want status 0\nstderr:\n%s", err, f.Stderr())
			}
			log := f.Stderr()
			if line, ok := findLine(log, "level=WARN", `msg="control socket removed: stopping as if destroyed"`, "path="+sock, "grace=3s"); !ok {
				t.Errorf("no warning naming %s and the grace:\n%s", sock, log)
			} else {
				t.Logf("log: %s", line)
			}
			if _, ok := findLine(log, "msg=stopping", `why="control socket removed"`, "grace=3s"); !ok {
				t.Errorf("no drain with the instance's grace:\n%s", log)
			}
			if _, ok := findLine(log, "msg=stopped", "interface=faith0"); !ok {
				t.Errorf("no msg=stopped:\n%s", log)
			}
			if hasLink(t, lab, "faith0") {
				t.Errorf("faith0 still exists after the instance stopped")
			}
			if tc.name == "Replaced" {
				// What was put there is not the instance's to remove.
				if b, err := os.ReadFile(sock); err != nil || string(b) != "not a socket\n" {
					t.Errorf("the file put in the socket's place: %q, %v; want it untouched", b, err)
				}
			}
		})
	}
}

// TestRunSocketRemoved removes the control socket of one of the
// appliance's interfaces: that interface stops as if destroyed, and the
// appliance, all or nothing, stops the other and exits 1, as when an
// interface is deleted under it (TestRunInterfaceRemoved).
func TestRunSocketRemoved(t *testing.T) {
	lab := netlab.New(t)
	prepareRunRouter(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithif.conf")
	writeFile(t, conf, runConf(""))
	before := snapshot(t, lab.Router, lab.RunDir)
	f := lab.StartRun(t, "--config", conf)
	f.ExpectExit()
	sock := socketPath(lab, "faith1")
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if !f.Wait(10 * time.Second) {
		t.Fatalf("faithif run still running 10 s after faith1's control socket was removed\nstderr:\n%s", f.Stderr())
	}
	var ee *exec.ExitError
	if err := f.ExitErr(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit after faith1's control socket was removed: %v, want status 1", err)
	}
	log := f.Stderr()
	if _, ok := findLine(log, "level=WARN", "control socket removed", "interface=faith1", "path="+sock); !ok {
		t.Errorf("no warning naming faith1's socket:\n%s", log)
	}
	for _, name := range []string{"faith0", "faith1"} {
		if _, ok := findLine(log, "msg=stopped", "interface="+name); !ok {
			t.Errorf("%s was not stopped:\n%s", name, log)
		}
	}
	sameState(t, "after faith1's control socket was removed", before, snapshot(t, lab.Router, lab.RunDir))
	checkNothingLeft(t, lab, "after faith1's control socket was removed")
}

// TestRunDestroyRefused runs "faithif destroy faith0" on an interface of
// the appliance: it is refused (exit 1, a message saying whose it is and
// what to do) and nothing stops: both interfaces relay on, and show says
// which command runs them.
func TestRunDestroyRefused(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	prepareRunRouter(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithif.conf")
	writeFile(t, conf, runConf(""))
	f := lab.StartRun(t, "--config", conf)

	r := lab.Faithif("destroy", "faith0")
	t.Logf("faithif destroy faith0: exit %d, stderr: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	want := fmt.Sprintf("faithif: destroy faith0: faith0 belongs to 'faithif run' (pid %d): stop that, or remove the interface from its configuration and restart it\n", f.Pid())
	if r.Err != nil || r.ExitCode != 1 || r.Stderr != want || r.Stdout != "" {
		t.Errorf("faithif destroy faith0 of the appliance: %s; want exit 1 and stderr %q", r, want)
	}
	select {
	case <-f.Done():
		t.Fatalf("the appliance exited after a refused destroy: %v\nstderr:\n%s", f.ExitErr(), f.Stderr())
	default:
	}
	for _, name := range []string{"faith0", "faith1"} {
		st, err := lab.ShowIf(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Draining || !st.Up || st.Owner != "run" || st.PID != f.Pid() {
			t.Errorf("show %s after a refused destroy: %s; want up, not draining, owner run, pid %d", name, st.Raw, f.Pid())
		}
	}
	if _, ok := findLine(f.Stderr(), "msg=stopping"); ok {
		t.Errorf("the appliance logged a stop after a refused destroy:\n%s", f.Stderr())
	}
	echoFlows(t, ctx, lab, faithTo(runPrefix0, netlab.ServerAddr, port), 1, 1000, 600)
	echoFlows(t, ctx, lab, faithTo(runPrefix1, netlab.ServerAddr, port), 1, 1000, 700)
	if r := lab.Faithif("show", "faith0"); r.ExitCode != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("pid %d (faithif run)", f.Pid())) {
		t.Errorf("faithif show faith0: %s; want its heading to say pid %d (faithif run)", r, f.Pid())
	}
	stopRun(t, f, 5*time.Second)
}
