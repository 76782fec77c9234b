package faithif

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultRunDir holds the control sockets and the persisted keepfaith value.
const DefaultRunDir = "/run/faithif"

// RunDirEnv names the environment variable that overrides DefaultRunDir.
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
// sockets and where the global keepfaith value is kept between instances.
type RunDir string

// RunDirFromEnv returns $FAITHIF_RUN_DIR, or DefaultRunDir.
func RunDirFromEnv() RunDir {
	if d := os.Getenv(RunDirEnv); d != "" {
		return RunDir(d)
	}
	return DefaultRunDir
}

// SocketPath returns the control socket path of interface name.
func (d RunDir) SocketPath(name string) string {
	return filepath.Join(string(d), name+".sock")
}

// Instances returns the names of the interfaces that have a control socket,
// sorted. Whether each one answers is for the caller to find out.
func (d RunDir) Instances() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(string(d), "faith*.sock"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".sock")
		if ValidateName(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func (d RunDir) keepFaithPath() string { return filepath.Join(string(d), "keepfaith") }

// KeepFaith returns the global keepfaith value; 0 (false) if never set.
func (d RunDir) KeepFaith() (bool, error) {
	b, err := os.ReadFile(d.keepFaithPath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
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

// SetKeepFaith stores the global keepfaith value, so that interfaces created
// later start with it. Running instances are told separately.
func (d RunDir) SetKeepFaith(on bool) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
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
