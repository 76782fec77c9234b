package netlab

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RunDirPids returns the ids of the live processes whose environment holds
// FAITHIF_RUN_DIR=dir: every faithif started for that run directory,
// including background instances ("faithif create" without -f), which are
// not children of the test process and are invisible to Lab.StartFaithif.
func RunDirPids(dir string) []int {
	want := []byte("FAITHIF_RUN_DIR=" + dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !ProcessAlive(pid) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// ProcessAlive reports whether process pid exists and is not a zombie. A
// background faithif is reparented when the command that started it exits,
// so the test cannot wait for it; an exited one may linger as a zombie until
// its new parent reaps it, and counts as gone.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

// WaitProcessGone waits up to timeout for pid to exit (see ProcessAlive) and
// reports whether it did.
func WaitProcessGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// killRunDirProcs stops every process of run directory dir: SIGTERM (a
// drain), a second SIGTERM after 3 s (reset the open flows), SIGKILL after
// 2 s more. It returns the pids it found.
func killRunDirProcs(dir string) []int {
	pids := RunDirPids(dir)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	for _, pid := range pids {
		if WaitProcessGone(pid, 3*time.Second) {
			continue
		}
		syscall.Kill(pid, syscall.SIGTERM)
		if !WaitProcessGone(pid, 2*time.Second) {
			syscall.Kill(pid, syscall.SIGKILL)
			WaitProcessGone(pid, 2*time.Second)
		}
	}
	return pids
}
