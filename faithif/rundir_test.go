package faithif

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chmod sets path's mode exactly, whatever the umask.
func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// wantRefused checks that err names path and says what is wrong.
func wantRefused(t *testing.T, what string, err error, path string, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error; want it refused", what)
	}
	for _, s := range append([]string{path}, subs...) {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %q does not mention %q", what, err, s)
		}
	}
}

func TestRunDirMake(t *testing.T) {
	d := RunDir(filepath.Join(t.TempDir(), "a", "run"))
	if err := d.Check(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check of a missing run dir = %v; want ErrNotExist", err)
	}
	if on, err := d.KeepFaith(); err != nil || on {
		t.Fatalf("KeepFaith with no run dir = %v, %v; want 0", on, err)
	}
	if err := d.Make(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(string(d))
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("made run dir: %v, %v; want a directory writable only by its owner", fi.Mode(), err)
	}
	if err := d.Make(); err != nil {
		t.Fatalf("Make of an existing run dir = %v", err)
	}
	// Through a symbolic link of ours, to a trusted directory.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(string(d), link); err != nil {
		t.Fatal(err)
	}
	if err := RunDir(link).Check(); err != nil {
		t.Fatalf("Check through a symlink to a trusted dir = %v", err)
	}
}

func TestRunDirWritableRefused(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		who  string
	}{
		{0o777, "its group and others"},
		{0o775, "its group"},
		{0o757, "others"},
		{0o777 | os.ModeSticky, "mode 1777"}, // a /tmp-style directory
	} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keepfaith"), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		chmod(t, dir, tc.mode)
		d := RunDir(dir)
		what := tc.mode.String()
		wantRefused(t, what+": Check", d.Check(), dir, "writable by", tc.who)
		wantRefused(t, what+": Make", d.Make(), dir, "writable by")
		_, err := d.KeepFaith()
		wantRefused(t, what+": KeepFaith", err, dir, "writable by")
		wantRefused(t, what+": SetKeepFaith", d.SetKeepFaith(false), dir, "writable by")
		f, err := d.OpenLog("faith0")
		if f != nil {
			f.Close()
		}
		wantRefused(t, what+": OpenLog", err, dir, "writable by")
		if _, err := os.Lstat(d.LogPath("faith0")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: OpenLog created %s in a refused run dir", what, d.LogPath("faith0"))
		}
	}
}

func TestRunDirParents(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "parent")
	dir := filepath.Join(parent, "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, 0o755)
	// Sticky and world-writable above, like /tmp: nobody else can rename
	// the run dir away.
	chmod(t, parent, 0o777|os.ModeSticky)
	if err := RunDir(dir).Check(); err != nil {
		t.Fatalf("run dir in a sticky world-writable dir: %v; want it accepted", err)
	}
	chmod(t, parent, 0o777)
	err := RunDir(dir).Check()
	wantRefused(t, "parent 0777", err, dir, parent, "above it", "writable by its group and others")
	// Make does not create a run dir under such a parent.
	missing := filepath.Join(parent, "new")
	wantRefused(t, "Make under parent 0777", RunDir(missing).Make(), missing, parent)
	if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Make created %s under a parent others can write to", missing)
	}
	chmod(t, parent, 0o755)
	// A symlink on the way to a directory others can write to.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, open, 0o777)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(open, link); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "symlink to 0777", RunDir(link).Check(), "writable by")
}

func TestRunDirOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "run dir of uid 65534", RunDir(dir).Check(), dir, "owned by uid 65534", "not by root")
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	// A file in it that belongs to someone else.
	kf := filepath.Join(dir, "keepfaith")
	if err := os.WriteFile(kf, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(kf, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := RunDir(dir).KeepFaith()
	wantRefused(t, "keepfaith of uid 65534", err, kf, "owned by uid 65534")
}

func TestRunDirFiles(t *testing.T) {
	d := RunDir(t.TempDir())
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("untouched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	untouched := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(target); err != nil || string(b) != "untouched\n" {
			t.Errorf("%s: the symlink's target now holds %q (%v)", what, b, err)
		}
	}

	// A symbolic link planted at the log path is refused, not followed.
	if err := os.Symlink(target, d.LogPath("faith0")); err != nil {
		t.Fatal(err)
	}
	f, err := d.OpenLog("faith0")
	if f != nil {
		f.Write([]byte("written through the link\n"))
		f.Close()
	}
	wantRefused(t, "OpenLog over a symlink", err, d.LogPath("faith0"), "symbolic link")
	untouched("OpenLog")

	// The same at the keepfaith path: reading refuses it; setting replaces
	// the link itself, never writing through it.
	if err := os.Symlink(target, d.keepFaithPath()); err != nil {
		t.Fatal(err)
	}
	_, err = d.KeepFaith()
	wantRefused(t, "KeepFaith through a symlink", err, d.keepFaithPath(), "symbolic link")
	if err := d.SetKeepFaith(true); err != nil {
		t.Fatal(err)
	}
	untouched("SetKeepFaith")
	if fi, err := os.Lstat(d.keepFaithPath()); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("keepfaith after SetKeepFaith: %v, %v; want a regular file", fi.Mode(), err)
	}
	if on, err := d.KeepFaith(); err != nil || !on {
		t.Errorf("KeepFaith = %v, %v; want 1", on, err)
	}

	// A file others may write to is refused.
	chmod(t, d.keepFaithPath(), 0o666)
	_, err = d.KeepFaith()
	wantRefused(t, "keepfaith 0666", err, d.keepFaithPath(), "writable by its group and others")

	// The log: created 0640, reopened for appending, never a FIFO or a dir.
	f, err = d.OpenLog("faith1")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	if fi.Mode().Perm()&0o022 != 0 {
		t.Errorf("log mode %v; want writable only by its owner", fi.Mode())
	}
	if err := syscall.Mkfifo(d.LogPath("faith2"), 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, d.LogPath("faith2"), 0o600)
	if f, err := d.OpenLog("faith2"); err == nil {
		f.Close()
		t.Errorf("OpenLog of a FIFO succeeded; want it refused")
	}
}

// TestRunDirHardLinkRefused: a hard link planted in the run directory (while
// it was open to others) to a file elsewhere, owned by root (or by us) and
// mode 0640, passes the owner and mode checks; its link count gives it away,
// and faithif neither appends its log to it nor reads keepfaith from it.
func TestRunDirHardLinkRefused(t *testing.T) {
	base := t.TempDir() // one file system, so that the link can be made
	d := RunDir(filepath.Join(base, "run"))
	if err := d.Make(); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(base, "shadow")
	if err := os.WriteFile(target, []byte("root:x:0:0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	chmod(t, target, 0o640)
	if os.Geteuid() == 0 {
		if err := os.Chown(target, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	untouched := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(target); err != nil || string(b) != "root:x:0:0\n" {
			t.Errorf("%s: the linked file now holds %q (%v)", what, b, err)
		}
	}

	if err := os.Link(target, d.LogPath("faith0")); err != nil {
		t.Fatal(err)
	}
	f, err := d.OpenLog("faith0")
	if f != nil {
		f.Write([]byte("appended through the hard link\n"))
		f.Close()
	}
	wantRefused(t, "OpenLog of a hard link", err, d.LogPath("faith0"), "has 2 links", "hard link")
	untouched("OpenLog")
	// Once the planted name is removed, the log is created afresh.
	if err := os.Remove(d.LogPath("faith0")); err != nil {
		t.Fatal(err)
	}
	if f, err = d.OpenLog("faith0"); err != nil {
		t.Fatalf("OpenLog after the link is removed: %v", err)
	}
	f.Close()

	// keepfaith: reading refuses the link; setting replaces the name, never
	// writing to the file it shares.
	if err := os.Link(target, d.keepFaithPath()); err != nil {
		t.Fatal(err)
	}
	_, err = d.KeepFaith()
	wantRefused(t, "KeepFaith of a hard link", err, d.keepFaithPath(), "has 2 links")
	if err := d.SetKeepFaith(true); err != nil {
		t.Fatal(err)
	}
	untouched("SetKeepFaith")
	if on, err := d.KeepFaith(); err != nil || !on {
		t.Errorf("KeepFaith after SetKeepFaith = %v, %v; want 1", on, err)
	}

}

// TestRunDirInstances: the sockets named faithN.sock, sorted; none for a
// missing run directory; a run directory whose name looks like a glob
// pattern is read as a name; an unreadable one is an error that says so.
func TestRunDirInstances(t *testing.T) {
	base := t.TempDir()
	if names, err := RunDir(filepath.Join(base, "missing")).Instances(); err != nil || len(names) != 0 {
		t.Fatalf("Instances of a missing run dir = %v, %v; want none", names, err)
	}
	dir := filepath.Join(base, "run[1]*")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"faith2.sock", "faith10.sock", "faith0.sock", "faith0.log", "faithx.sock", "keepfaith", "other.sock"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names, err := RunDir(dir).Instances()
	if err != nil || strings.Join(names, " ") != "faith0 faith10 faith2" {
		t.Fatalf("Instances = %v, %v; want [faith0 faith10 faith2]", names, err)
	}
	notDir := filepath.Join(dir, "keepfaith")
	_, err = RunDir(notDir).Instances()
	wantRefused(t, "Instances of a file", err, notDir, "run directory", "list the running interfaces")
}

// TestLogWriterRotates: a background log is rotated by size: a write that
// would take it past LogMaxMB renames it NAME-TIME.log (mode kept) and
// starts a new one with the same mode; at most LogBackups renamed logs are
// kept, so the logs of an interface cannot grow without bound.
func TestLogWriterRotates(t *testing.T) {
	d := RunDir(t.TempDir())
	w, err := d.LogWriter("faith0")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fi, err := os.Lstat(d.LogPath("faith0"))
	if err != nil || fi.Mode() != 0o640 {
		t.Fatalf("log before any write: %v, %v; want a regular file, mode 0640", fi.Mode(), err)
	}
	line := []byte(strings.Repeat("x", 1023) + "\n")
	const max = LogMaxMB << 20
	write := func(n int) {
		t.Helper()
		for range n {
			if _, err := w.Write(line); err != nil {
				t.Fatal(err)
			}
		}
	}
	backups := func() []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(string(d), "faith0-*.log"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	write(max / len(line)) // exactly full
	if b := backups(); len(b) != 0 {
		t.Fatalf("rotated at %d bytes: %v", max, b)
	}
	write(1) // one line more: rotated first
	b := backups()
	if len(b) != 1 {
		t.Fatalf("after %d bytes: backups %v, want one", max+len(line), b)
	}
	if fi, err := os.Lstat(b[0]); err != nil || fi.Size() != max || fi.Mode() != 0o640 {
		t.Errorf("renamed log %s: %v; want %d bytes, mode 0640 (%v)", b[0], fi, max, err)
	}
	if fi, err := os.Lstat(d.LogPath("faith0")); err != nil || fi.Size() != int64(len(line)) || fi.Mode() != 0o640 {
		t.Errorf("new log: %v; want %d bytes, mode 0640 (%v)", fi, len(line), err)
	}

	// More rotations than LogBackups: the oldest are removed (by a
	// goroutine of the writer's: wait for it, a hang guard only).
	for range LogBackups + 2 {
		write(max / len(line))
	}
	for deadline := time.Now().Add(10 * time.Second); len(backups()) > LogBackups && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if b := backups(); len(b) != LogBackups {
		t.Errorf("backups %v; want the %d newest", b, LogBackups)
	}
}

// TestLogWriterRefusesLinks: the log's checks hold for the rotated writer
// too: a symbolic or hard link planted at the log's name is refused, never
// written through.
func TestLogWriterRefusesLinks(t *testing.T) {
	base := t.TempDir()
	d := RunDir(filepath.Join(base, "run"))
	if err := d.Make(); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(base, "target")
	if err := os.WriteFile(target, []byte("untouched\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, d.LogPath("faith0")); err != nil {
		t.Fatal(err)
	}
	w, err := d.LogWriter("faith0")
	if w != nil {
		w.Write([]byte("written through the link\n"))
		w.Close()
	}
	wantRefused(t, "LogWriter over a symlink", err, d.LogPath("faith0"), "symbolic link")
	if err := os.Link(target, d.LogPath("faith1")); err != nil {
		t.Fatal(err)
	}
	w, err = d.LogWriter("faith1")
	if w != nil {
		w.Write([]byte("written through the hard link\n"))
		w.Close()
	}
	wantRefused(t, "LogWriter of a hard link", err, d.LogPath("faith1"), "has 2 links")
	if b, err := os.ReadFile(target); err != nil || string(b) != "untouched\n" {
		t.Errorf("the linked file now holds %q (%v)", b, err)
	}
}
