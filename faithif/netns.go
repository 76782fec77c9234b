package faithif

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsRunDirs holds the run directories of the network namespaces other
// than PID 1's, one per namespace, named by its cookie (NetnsRunDir).
const NetnsRunDirs = DefaultRunDir + "/netns"

// RunDirForNetns returns the run directory of the calling thread's network
// namespace, the one faithif uses when FAITHIF_RUN_DIR is not set. As on
// BSD, where each network stack (a vnet jail's) has its own interfaces and
// its own net.inet6.ip6.keepfaith, each network namespace has its own
// control sockets, keepfaith value and background logs:
//
//   - in PID 1's network namespace (the host's; in a container, the
//     container's), DefaultRunDir, /run/faithif;
//   - in any other, /run/faithif/netns/COOKIE (NetnsRunDir), COOKIE being
//     the namespace's cookie (NetnsCookie). Unlike the namespace's inode
//     number, a cookie is never given to another namespace during the
//     boot, so a new namespace never inherits the keepfaith value or a
//     stale socket of one that is gone.
//
// The calling thread (thread-self: a thread may have entered another
// namespace than the process's first one) is in PID 1's namespace if
// /proc/thread-self/ns/net and /proc/1/ns/net are the same file (device and
// inode). Where PID 1's may not be read (the kernel checks it as it would a
// ptrace: not for another user, nor for a root that lacks a capability PID
// 1 has), the namespaces' own /proc/net/dev are compared instead: each
// namespace has one, and reading it through /proc/1 needs no such
// permission. If neither can be told, or on a kernel without
// SO_NETNS_COOKIE (before Linux 5.14) in a namespace other than PID 1's, it
// returns an error that says to set FAITHIF_RUN_DIR.
//
// PID 1 is the host's init only in the initial PID namespace: a process in
// a new one (unshare -p, a container) has a PID 1 of its own, in its own
// network namespace, while it may still share the host's /run. So
// DefaultRunDir is for PID 1's network namespace in the initial PID
// namespace only; in another PID namespace every network namespace takes
// its COOKIE directory (a container of its own /run may still set
// FAITHIF_RUN_DIR=/run/faithif, as the image does). Where the kernel gives
// the initial network namespace a fixed inode number (PROC_NET_INIT_INO,
// recent kernels), that namespace is DefaultRunDir's from any PID
// namespace.
func RunDirForNetns() (RunDir, error) {
	return runDirForNetns([][2]string{
		{"/proc/thread-self/ns/net", "/proc/1/ns/net"},
		{"/proc/thread-self/net/dev", "/proc/1/net/dev"},
	}, NetnsCookie, func() (bool, error) {
		if initialNetNamespace() {
			return true, nil
		}
		return initialPIDNamespace()
	})
}

// initNetNamespaceInode is the inode number recent kernels give the
// initial network namespace's /proc/PID/ns/net (PROC_NET_INIT_INO); older
// ones number it as any other.
const initNetNamespaceInode = 0xEFFFFFF9

// initialNetNamespace reports whether the calling thread is in the initial
// network namespace, on a kernel that numbers it PROC_NET_INIT_INO.
func initialNetNamespace() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/thread-self/ns/net", &st) == nil && st.Ino == initNetNamespaceInode
}

// initPIDNamespaceInode is the inode number of the initial PID namespace's
// /proc/PID/ns/pid (the kernel's PROC_PID_INIT_INO, fixed since Linux 3.8).
const initPIDNamespaceInode = 0xEFFFFFFC

// initialPIDNamespace reports whether the calling thread is in the initial
// PID namespace, where PID 1 is the host's init.
func initialPIDNamespace() (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/pid", &st); err != nil {
		return false, fmt.Errorf("run directory: %w", err)
	}
	return st.Ino == initPIDNamespaceInode, nil
}

// runDirForNetns is RunDirForNetns with the files to compare, the cookie
// and the test whether PID 1 there is the host's given.
func runDirForNetns(files [][2]string, cookie func() (uint64, error), initialPID func() (bool, error)) (RunDir, error) {
	same, err := sameNetns(files)
	if err != nil {
		return "", err
	}
	if same {
		initial, err := initialPID()
		if err == nil && initial {
			return DefaultRunDir, nil
		}
	}
	c, err := cookie()
	if err != nil {
		return "", fmt.Errorf("run directory: faithif runs in a network namespace other than PID 1's, "+
			"and cannot tell which: %w; set %s to a run directory of this namespace's own", err, RunDirEnv)
	}
	return NetnsRunDir(c), nil
}

// sameNetns reports whether the first pair of files that can both be read
// are the same file: whether the calling thread is in PID 1's network
// namespace (see RunDirForNetns).
func sameNetns(files [][2]string) (bool, error) {
	var errs []string
	for _, f := range files {
		self, err := os.Stat(f[0])
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		pid1, err := os.Stat(f[1])
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return os.SameFile(self, pid1), nil
	}
	return false, fmt.Errorf("run directory: cannot tell whether this is PID 1's network namespace (%s); set %s",
		strings.Join(errs, "; "), RunDirEnv)
}

// NetnsRunDir returns the run directory of the network namespace whose
// cookie is cookie: /run/faithif/netns/COOKIE.
func NetnsRunDir(cookie uint64) RunDir {
	return RunDir(filepath.Join(NetnsRunDirs, strconv.FormatUint(cookie, 10)))
}

// NetnsCookie returns the cookie of the calling thread's network namespace
// (SO_NETNS_COOKIE, on a socket made for the purpose): a number the kernel
// gives a namespace when it makes it and gives no other until it reboots.
// It needs Linux 5.14 or later.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("network namespace cookie: socket: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, fmt.Errorf("network namespace cookie: SO_NETNS_COOKIE: %w (it needs Linux 5.14 or later)", err)
	}
	if err != nil {
		return 0, fmt.Errorf("network namespace cookie: SO_NETNS_COOKIE: %w", err)
	}
	return c, nil
}
