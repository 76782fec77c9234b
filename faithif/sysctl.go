package faithif

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// SysctlPath returns the /proc/sys file of a dotted kernel parameter name,
// such as net.ipv6.conf.all.forwarding.
func SysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// ReadSysctl returns a kernel parameter's value, with its whitespace
// normalised to single spaces.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(SysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// WriteSysctl sets a kernel parameter.
func WriteSysctl(key, value string) error {
	if err := os.WriteFile(SysctlPath(key), []byte(value+"\n"), 0); err != nil {
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			// A container: /proc/sys is read-only, and runtimes refuse
			// net.* sysctls with the host's network.
			return fmt.Errorf("sysctl %s=%s: %w: /proc/sys cannot be written here (a container?); set it on the host or through the container runtime, and the check at start will find it set", key, value, err)
		}
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// SysctlChange is one kernel parameter set by Apply, with the value it
// had before.
type SysctlChange struct {
	Key, Old, New string
}

// SysctlSet is the kernel parameters a process changed, to be put back when
// it stops.
type SysctlSet struct {
	changes []SysctlChange
}

// Set sets key to value and remembers the old value. A parameter that
// already has the value is not written and will not be put back.
func (s *SysctlSet) Set(key, value string) error {
	old, err := ReadSysctl(key)
	if err != nil {
		return err
	}
	want := strings.Join(strings.Fields(value), " ")
	if old == want {
		return nil
	}
	if err := WriteSysctl(key, value); err != nil {
		return err
	}
	now, err := ReadSysctl(key)
	if err != nil {
		return err
	}
	s.changes = append(s.changes, SysctlChange{Key: key, Old: old, New: now})
	return nil
}

// Changes returns what Set changed, in order.
func (s *SysctlSet) Changes() []SysctlChange { return s.changes }

// Restore puts back, last first, every parameter Set changed, unless
// something else has changed it since: that value is left as it is and
// reported in the error.
func (s *SysctlSet) Restore() error {
	var errs []error
	for k := len(s.changes) - 1; k >= 0; k-- {
		c := s.changes[k]
		now, err := ReadSysctl(c.Key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now != c.New {
			errs = append(errs, fmt.Errorf("sysctl %s: left at %q, changed by someone else since it was set to %q (it was %q)", c.Key, now, c.New, c.Old))
			continue
		}
		if err := WriteSysctl(c.Key, c.Old); err != nil {
			errs = append(errs, err)
		}
	}
	s.changes = nil
	return errors.Join(errs...)
}

// ipv6ForwardingPath is the router switch for IPv6, in the caller's network
// namespace.
const ipv6ForwardingPath = "/proc/sys/net/ipv6/conf/all/forwarding"

// IPv6Forwarding reports whether the network namespace forwards IPv6
// (net.ipv6.conf.all.forwarding): without it, only the host's own
// connections reach a faith interface.
func IPv6Forwarding() (bool, error) {
	b, err := os.ReadFile(ipv6ForwardingPath)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipv6ForwardingPath, err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}
