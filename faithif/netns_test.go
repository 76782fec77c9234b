package faithif

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRunDirForNetnsChoice checks the choice on stand-ins for the
// namespace files: the same file is PID 1's namespace (DefaultRunDir);
// another one is named by its cookie; the second pair of files decides
// when a file of the first cannot be read; a cookie the kernel cannot
// give, or no pair that can be read, is an error that says to set
// FAITHIF_RUN_DIR.
func TestRunDirForNetnsChoice(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link") // /proc/*/ns/net are links of a kind
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cookie := func() (uint64, error) { return 4097, nil }
	noCookie := func() (uint64, error) {
		return 0, errors.New("SO_NETNS_COOKIE: protocol not available")
	}
	for _, tc := range []struct {
		name        string
		files       [][2]string
		cookie      func() (uint64, error)
		want        RunDir
		errContains []string
	}{
		{"same", [][2]string{{a, link}, {a, b}}, noCookie, DefaultRunDir, nil},
		{"other", [][2]string{{a, b}, {a, a}}, cookie, "/run/faithif/netns/4097", nil},
		{"PID 1's hidden, same", [][2]string{{a, missing}, {b, b}}, noCookie, DefaultRunDir, nil},
		{"PID 1's hidden, other", [][2]string{{a, missing}, {b, a}}, cookie, "/run/faithif/netns/4097", nil},
		{"no cookie", [][2]string{{a, b}}, noCookie, "", []string{"other than PID 1's", "protocol not available", "set FAITHIF_RUN_DIR"}},
		{"nothing to compare", [][2]string{{a, missing}, {missing, a}}, cookie, "", []string{"cannot tell whether this is PID 1's", missing, "set FAITHIF_RUN_DIR"}},
	} {
		got, err := runDirForNetns(tc.files, tc.cookie, func() (bool, error) { return true, nil })
		if tc.errContains == nil {
			if err != nil || got != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: %q, no error; want one", tc.name, got)
			continue
		}
		for _, s := range tc.errContains {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not mention %q", tc.name, err, s)
			}
		}
	}
}

// TestRunDirNewPIDNamespace: PID 1's network namespace is the host's only
// in the initial PID namespace; in another (unshare -p sharing the host's
// /run), the namespace's own COOKIE directory is taken.
func TestRunDirNewPIDNamespace(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	same := [][2]string{{a, a}}
	cookie := func() (uint64, error) { return 4097, nil }
	if got, err := runDirForNetns(same, cookie, func() (bool, error) { return false, nil }); err != nil || got != NetnsRunDir(4097) {
		t.Errorf("same network namespace as PID 1, a new PID namespace: %q, %v; want %q", got, err, NetnsRunDir(4097))
	}
	if initial, err := initialPIDNamespace(); err != nil || !initial {
		t.Errorf("initialPIDNamespace() in the test process = %v, %v; want true (tests run in the host's PID namespace)", initial, err)
	}
}

// inNewNetns runs fn on a thread of its own in a new network namespace;
// the thread is thrown away afterwards. It needs root (CAP_SYS_ADMIN).
func inNewNetns(t *testing.T, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v (the test needs root)", err)
	}
}

// TestRunDirForNetns checks the choice in real namespaces: the test's own
// (DefaultRunDir when it is PID 1's), and a new one, named by its cookie,
// which no other namespace has: not the test's, not a second new one.
func TestRunDirForNetns(t *testing.T) {
	here, err := RunDirForNetns()
	if err != nil {
		t.Fatal(err)
	}
	hereCookie, err := NetnsCookie()
	if err != nil {
		t.Fatal(err)
	}
	// The test's own namespace, compared the second way (which needs no
	// permission on PID 1).
	self, err1 := os.Stat("/proc/thread-self/net/dev")
	pid1, err2 := os.Stat("/proc/1/net/dev")
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/net/dev: %v, %v", err1, err2)
	}
	if inPID1 := os.SameFile(self, pid1); inPID1 != (here == DefaultRunDir) {
		t.Errorf("in PID 1's network namespace: %v; run directory %q", inPID1, here)
	}

	var dirs []RunDir
	var cookies []uint64
	for range 2 {
		inNewNetns(t, func() {
			d, err := RunDirForNetns()
			if err != nil {
				t.Error(err)
				return
			}
			c, err := NetnsCookie()
			if err != nil {
				t.Error(err)
				return
			}
			if again, err := RunDirForNetns(); err != nil || again != d {
				t.Errorf("second call in the same namespace: %q, %v; want %q", again, err, d)
			}
			dirs, cookies = append(dirs, d), append(cookies, c)
		})
	}
	if t.Failed() {
		return
	}
	for i, d := range dirs {
		if want := NetnsRunDir(cookies[i]); d != want || !strings.HasPrefix(string(d), NetnsRunDirs+"/") {
			t.Errorf("new namespace %d: %q, want %q", i, d, want)
		}
		if cookies[i] == hereCookie || d == here {
			t.Errorf("new namespace %d has the test's cookie %d or run directory %q", i, hereCookie, here)
		}
	}
	if dirs[0] == dirs[1] {
		t.Errorf("two new namespaces share the run directory %q", dirs[0])
	}
}
