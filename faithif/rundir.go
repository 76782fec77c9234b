package faithif

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"gopkg.in/natefinch/lumberjack.v2"
)

// DefaultRunDir holds the control sockets, the background logs and the
// persisted keepfaith value of PID 1's network namespace; other namespaces
// have theirs below it (RunDirForNetns).
const DefaultRunDir = "/run/faithif"

// RunDirEnv names the environment variable that, when set, names the run
// directory, whatever the network namespace (see RunDirFromEnv).
const RunDirEnv = "FAITHIF_RUN_DIR"

// KeepFaithName is the sysctl name of the capture switch, as on BSD.
const KeepFaithName = "net.inet6.ip6.keepfaith"

// KeepFaithValue returns the switch's value as sysctl shows it: 1 for on,
// 0 for off.
func KeepFaithValue(on bool) int {
	if on {
		return 1
	}
	return 0
}

// RunDir is the directory where running instances keep their control
// sockets and background logs, and where the keepfaith value of their
// network namespace is kept between instances (RunDirFromEnv chooses it).
//
// Whoever can write to it could plant a control socket that answers root's
// `faithif destroy` while the real instance keeps running, or a symbolic
// link that a background log would follow. So, as sshd's StrictModes does,
// faithif trusts a run directory only if it, and every file faithif uses in
// it, is owned by root or by the user faithif runs as (its effective uid)
// and is writable by nobody else: not by its group, not by others, and not
// a sticky world-writable /tmp-style directory either (anyone may still
// create names in those). Every directory above it must be owned the same
// way and not writable by group or others, unless sticky (like /tmp: no one
// else can rename or remove what faithif created there). Files in it are
// opened without following symbolic links, and only if they have one link
// (name): a hard link planted while the directory was open to others could
// name any file of root's elsewhere on the file system, which owner and
// mode alone would not reveal, and the log would be appended to it.
//
// A missing run directory is created with mode 0755, like /run itself and
// wireguard-go's socket directory: nothing in it is secret (the control
// sockets are 0600, so only their owner can talk to an instance; the logs
// are 0640), and any user may read the keepfaith value and list the running
// interfaces, as a BSD sysctl and ifconfig let them.
type RunDir string

// RunDirFromEnv returns the run directory faithif uses: $FAITHIF_RUN_DIR
// as it is, if it is set; otherwise the calling thread's network
// namespace's own (RunDirForNetns).
func RunDirFromEnv() (RunDir, error) {
	if d := os.Getenv(RunDirEnv); d != "" {
		return RunDir(d), nil
	}
	return RunDirForNetns()
}

// SocketPath returns the control socket path of interface name.
func (d RunDir) SocketPath(name string) string {
	return filepath.Join(string(d), name+".sock")
}

// LogPath returns the path of the log of interface name when it runs in
// the background.
func (d RunDir) LogPath(name string) string {
	return filepath.Join(string(d), name+".log")
}

// Instances returns the names of the interfaces that have a control socket
// (a name faithN.sock), sorted; none if the run directory does not exist.
// Whether each one answers is for the caller to find out.
func (d RunDir) Instances() ([]string, error) {
	// Read the directory rather than glob it: a glob would take a run
	// directory named with '[' or '*' as a pattern, and hide read errors.
	entries, err := os.ReadDir(string(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("run directory %s: list the running interfaces: %w", d, err)
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if ok && ValidateName(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Make creates the run directory, mode 0755, if it is missing (and any
// missing directory above it), then checks it as Check does.
func (d RunDir) Make() error {
	err := d.Check()
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return d.Check()
}

// Check returns nil if the run directory can be trusted (see RunDir), or
// an error naming the path and what is wrong with it. The error wraps
// os.ErrNotExist if the directory, or one above it, does not exist.
func (d RunDir) Check() error {
	abs, err := filepath.Abs(string(d))
	if err != nil {
		return fmt.Errorf("run directory %s: %w", d, err)
	}
	if err := checkChain(abs); err != nil {
		return err
	}
	// The directories the path's symbolic links lead to, if any.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", abs, err)
	}
	if resolved != abs {
		return checkChain(resolved)
	}
	return nil
}

// checkChain checks every directory of the absolute path dir, from the
// root down: each must exist and be trusted (CheckTrusted); those above dir
// may be world-writable if sticky. A symbolic link on the way must be owned
// by a trusted user (its mode means nothing).
func checkChain(dir string) error {
	p := "/"
	for _, c := range append([]string{""}, strings.Split(strings.TrimPrefix(dir, "/"), "/")...) {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("run directory %s: %w", dir, err)
		}
		leaf := p == dir
		if fi.Mode()&os.ModeSymlink != 0 {
			if err := checkOwner(fi); err != nil {
				return fmt.Errorf("run directory %s: symbolic link %s %w", dir, p, err)
			}
			if fi, err = os.Stat(p); err != nil {
				return fmt.Errorf("run directory %s: %w", dir, err)
			}
		}
		if !fi.IsDir() {
			return fmt.Errorf("run directory %s: %s is not a directory", dir, p)
		}
		if err := checkOwner(fi); err != nil {
			if leaf {
				return fmt.Errorf("run directory %s %w", dir, err)
			}
			return fmt.Errorf("run directory %s: the directory above it, %s, %w", dir, p, err)
		}
		if err := checkWritable(fi, !leaf); err != nil {
			if leaf {
				return fmt.Errorf("run directory %s %w, so another user could plant a control socket or a symbolic link in it: "+
					"make it writable only by its owner (chmod 755 %s) or choose another with %s", dir, err, dir, RunDirEnv)
			}
			return fmt.Errorf("run directory %s: the directory above it, %s, %w, so another user could replace the run directory: "+
				"make it writable only by its owner (chmod go-w %s)", dir, p, err, p)
		}
	}
	return nil
}

// CheckTrusted returns nil if the file fi describes (a file in the run
// directory, such as a control socket) is owned by root or by the user
// faithif runs as and is writable only by its owner; otherwise an error
// naming path and what is wrong.
func CheckTrusted(path string, fi os.FileInfo) error {
	if err := checkOwner(fi); err != nil {
		return fmt.Errorf("%s %w", path, err)
	}
	if err := checkWritable(fi, false); err != nil {
		return fmt.Errorf("%s %w", path, err)
	}
	return nil
}

// TrustedUID reports whether uid may own the run directory and its files,
// and run the instances a command talks to: root, or the effective user.
func TrustedUID(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// TrustedUsers says who TrustedUID trusts, for error messages.
func TrustedUsers() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("root or uid %d (the user faithif runs as)", euid)
	}
	return "root (the user faithif runs as)"
}

// checkOwner returns an error, to follow a path, unless fi is owned by root
// or by the effective user.
func checkOwner(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("has no owner faithif can read")
	}
	if !TrustedUID(st.Uid) {
		return fmt.Errorf("is owned by uid %d, not by %s", st.Uid, TrustedUsers())
	}
	return nil
}

// checkLinks returns an error, to follow a path, unless the file fi
// describes has exactly one link: a file with another name may be a hard
// link planted to a file elsewhere (same owner and mode, so nothing else
// tells), and faithif would write to that file.
func checkLinks(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("has no link count faithif can read")
	}
	switch {
	case st.Nlink == 0:
		return errors.New("was removed while faithif opened it")
	case st.Nlink > 1:
		return fmt.Errorf("has %d links (names), not 1: it may be a hard link to a file elsewhere, "+
			"so faithif does not use it (remove it)", st.Nlink)
	}
	return nil
}

// checkWritable returns an error, to follow a path, if group or others may
// write to fi; if stickyOK, a sticky directory (like /tmp) is accepted.
func checkWritable(fi os.FileInfo, stickyOK bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("has no mode faithif can read")
	}
	mode := st.Mode & 0o7777
	sticky := mode&syscall.S_ISVTX != 0
	var who string
	switch mode & 0o022 {
	case 0:
		return nil
	case 0o020:
		who = "its group"
	case 0o002:
		who = "others"
	default:
		who = "its group and others"
	}
	if stickyOK && sticky && fi.IsDir() {
		return nil
	}
	return fmt.Errorf("is writable by %s (mode %04o)", who, mode)
}

// openFile opens the file name in the run directory with flag (O_NOFOLLOW
// and O_CLOEXEC added) and checks that it is a regular file faithif can
// trust (CheckTrusted: owner and mode) with a single link (no other name,
// elsewhere), checked on the file it opened. A symbolic link there is
// refused, never followed. Check the directory first.
func (d RunDir) openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	path := filepath.Join(string(d), name)
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: faithif does not follow links in its run directory (remove it)", path)
	}
	if err != nil {
		return nil, err // an *os.PathError: it names the path
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err == nil {
		err = CheckTrusted(path, fi)
	}
	if err == nil {
		if lerr := checkLinks(fi); lerr != nil {
			err = fmt.Errorf("%s %w", path, lerr)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenLog makes the run directory if needed (Make) and opens the log of
// interface name for reading and appending, created mode 0640 if missing.
func (d RunDir) OpenLog(name string) (*os.File, error) {
	if err := d.Make(); err != nil {
		return nil, err
	}
	f, err := d.openFile(name+".log", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}

// A background instance's log is rotated by size: once it would pass
// LogMaxMB megabytes it is renamed NAME-TIME.log (TIME in UTC) and a new one
// is started; the LogBackups newest renamed logs are kept, older ones
// removed. So the logs of one interface take at most
// (LogBackups+1) × LogMaxMB megabytes.
const (
	LogMaxMB   = 10
	LogBackups = 3
)

// LogWriter returns the writer a background instance of interface name
// logs to: its log in the run directory, rotated by size (LogMaxMB,
// LogBackups) by gopkg.in/natefinch/lumberjack.v2. The log is first
// opened and checked as OpenLog does (a trusted run directory; no symbolic
// link followed, a single link, a trusted owner and mode; created mode 0640
// if missing). The writer then opens it by name, and on rotation renames it
// and creates the next one (with the old one's mode and owner) by name: no
// one but root or faithif's own user can change a name in a trusted run
// directory, so none of them can be a link planted since the check.
func (d RunDir) LogWriter(name string) (io.WriteCloser, error) {
	f, err := d.OpenLog(name)
	if err != nil {
		return nil, err
	}
	f.Close()
	return &lumberjack.Logger{Filename: d.LogPath(name), MaxSize: LogMaxMB, MaxBackups: LogBackups}, nil
}

func (d RunDir) keepFaithPath() string { return filepath.Join(string(d), "keepfaith") }

// KeepFaith returns the keepfaith value; 0 (false) if never set.
func (d RunDir) KeepFaith() (bool, error) {
	err := d.Check()
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", KeepFaithName, err)
	}
	f, err := d.openFile("keepfaith", os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", KeepFaithName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", KeepFaithName, err)
	}
	switch strings.TrimSpace(string(b)) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("read %s: %s holds %q, want 0 or 1", KeepFaithName, d.keepFaithPath(), b)
}

// SetKeepFaith stores the keepfaith value, so that interfaces created
// later start with it, making the run directory if needed (Make). The file
// is replaced whole (a new file renamed over it), never written through
// whatever is there. Running instances are told separately.
func (d RunDir) SetKeepFaith(on bool) error {
	if err := d.Make(); err != nil {
		return fmt.Errorf("set %s: %w", KeepFaithName, err)
	}
	v := "0\n"
	if on {
		v = "1\n"
	}
	f, err := os.CreateTemp(string(d), "keepfaith.*")
	if err != nil {
		return fmt.Errorf("set %s: %w", KeepFaithName, err)
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), d.keepFaithPath())
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("set %s: %w", KeepFaithName, err)
	}
	return nil
}
