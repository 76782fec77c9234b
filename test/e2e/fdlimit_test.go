package e2e

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFDLimitRefusesClearly lowers faithif's open-files limit while it runs
// and opens more flows than it allows: the extra ones are refused at once
// (ECONNREFUSED, not a hang), counted in flows_fd_limit and named in a log
// line; closing flows frees descriptors and new flows work again.
func TestFDLimitRefusesClearly(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)
	l, port := listenServer(t, lab)
	held := make(chan *net.TCPConn, 200)
	serve(t, l, func(c *net.TCPConn) { held <- c })

	const limit = 96
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(f.Pid()), "--nofile="+strconv.Itoa(limit)+":"+strconv.Itoa(limit)).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v: %s", err, out)
	}
	if st := mustShow(t, lab); st.FDLimit != limit {
		t.Fatalf("show fd_limit = %d after prlimit; want %d", st.FDLimit, limit)
	}

	var conns []*net.TCPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := 0
	for i := 0; i < 2*limit; i++ {
		start := time.Now()
		c, err := dialServer(ctx, lab, port)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect %d: %v after %v; want success or ECONNREFUSED", i, err, time.Since(start))
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("connect %d refused only after %v", i, d)
			}
			refused++
			continue
		}
		conns = append(conns, c)
	}
	t.Logf("%d flows held, %d refused with a %d-fd limit", len(conns), refused, limit)
	if refused == 0 || len(conns) == 0 {
		t.Fatalf("%d held, %d refused; want some of each", len(conns), refused)
	}
	st := mustShow(t, lab)
	if st.FlowsFDLimit != uint64(refused) {
		t.Errorf("flows_fd_limit = %d; want %d", st.FlowsFDLimit, refused)
	}
	if _, ok := f.WaitLog(3*time.Second, func(line string) bool {
		return strings.Contains(line, "out of file descriptors") && strings.Contains(line, "fd-limit")
	}); !ok {
		t.Errorf("no log line naming the fd limit; log:\n%s", f.Stderr())
	}

	// Free some: new flows work again.
	for _, c := range conns[:10] {
		c.Close()
	}
	conns = conns[10:]
	time.Sleep(200 * time.Millisecond)
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		t.Fatalf("connect after freeing descriptors: %v", err)
	}
	c.Close()
}
