package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/faithif/status"
)

const destroyUsage = `usage: faithif destroy faithN [--grace D]

Drains the instance serving faithN (no new flows; open flows get the grace
period to finish, then are reset), removes its routes and the interface,
and waits for it to exit. SIGTERM does the same. 'ip link del faithN' cannot
drain (the interface is gone): open flows are reset at once, the IPv4
servers get a RST and the IPv6 clients hear nothing until they time out.
An interface of 'faithif run' is not destroyed alone: stop the appliance.

Flags:
`

func cmdDestroy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("destroy", destroyUsage, stderr)
	graceFlag := fs.String("grace", "", "let open flows finish this long (a `duration`) before resetting them (default: the instance's own --grace)")
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	var grace time.Duration // 0: the instance's own
	if *graceFlag != "" {
		if grace, err = time.ParseDuration(*graceFlag); err != nil {
			return usagef("--grace: %q: not a duration (e.g. 10s, 1m)", *graceFlag)
		}
		if grace < 0 {
			return usagef("--grace: %s: must not be negative", grace)
		}
		if grace == 0 {
			grace = time.Nanosecond // reset at once; zero on the wire is "the instance's own"
		}
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	c := control.Client{Path: runDir.SocketPath(name)}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := c.Status(sctx)
	scancel()
	if err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	wait := grace
	if wait == 0 {
		wait, _ = time.ParseDuration(st.Grace)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
	defer cancel()
	if st, err = c.Destroy(ctx, grace); err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	if st.FlowsOpen > 0 {
		fmt.Fprintf(stdout, "%s: draining %d open flows (up to %s)\n", name, st.FlowsOpen, wait)
	}
	if err := c.WaitGone(ctx); err != nil || !waitExit(ctx, st.PID) {
		return fmt.Errorf("destroy %s: pid %d did not exit within %s", name, st.PID, wait+10*time.Second)
	}
	fmt.Fprintf(stdout, "%s destroyed (pid %d)\n", name, st.PID)
	return nil
}

const reloadUsage = `usage: faithif reload faithN [--access FILE]

Rereads the access file given to create --access (as SIGHUP does), or with
--access switches to FILE, which later reloads and SIGHUP then reread. Open
flows keep running; new flows see the new rules. A file with errors is
rejected whole and the old rules (and file) stay. An interface of
'faithif run' takes its access file from its configuration only.

Flags:
`

func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", reloadUsage, stderr)
	access := fs.String("access", "", "switch to this access file (faithd.conf syntax)")
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	if *access != "" {
		// The instance may run in another directory: send the path whole.
		if *access, err = filepath.Abs(*access); err != nil {
			return fmt.Errorf("reload %s: --access: %w", name, err)
		}
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("reload %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := control.Client{Path: runDir.SocketPath(name)}
	var st *status.Status
	if *access != "" {
		st, err = c.ReloadFrom(ctx, *access)
	} else {
		st, err = c.Reload(ctx)
	}
	if err != nil {
		return err
	}
	rules := "rules"
	if st.RuleCount == 1 {
		rules = "rule"
	}
	fmt.Fprintf(stdout, "%s: %d %s from %s\n", name, st.RuleCount, rules, st.Rules)
	return nil
}

const showUsage = `usage: faithif show [faithN] [--json]

Prints the state and counters of one running instance, or of all of them.

Flags:
`

const listUsage = `usage: faithif list [--json]

Prints the state and counters of every running instance, as show without a
name does.

Flags:
`

func cmdShow(cmd string, args []string, stdout, stderr io.Writer) error {
	usage := showUsage
	if cmd == "list" {
		usage = listUsage
	}
	fs := newFlagSet(cmd, usage, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	name, err := parseWithName(fs, args, false)
	if err != nil {
		return err
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := statuses(ctx, runDir, name)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if name != "" {
			return enc.Encode(all[0])
		}
		return enc.Encode(all)
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no faith interfaces are running")
	}
	for _, st := range all {
		if err := st.WriteText(stdout); err != nil {
			return err
		}
	}
	return nil
}

// statuses returns the status of instance name, or of every instance
// running in runDir when name is empty.
func statuses(ctx context.Context, runDir faithif.RunDir, name string) ([]*status.Status, error) {
	if name == "" {
		return control.Statuses(ctx, runDir)
	}
	st, err := control.Client{Path: runDir.SocketPath(name)}.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return []*status.Status{st}, nil
}

const sysctlUsage = `usage: faithif sysctl [-w] net.inet6.ip6.keepfaith[=0|1]

Reads or sets the capture switch, as sysctl(8) does on BSD. While it is 0
(the default) nothing is captured: packets routed to a faith interface are
discarded and counted. Like an interface name, it belongs to the network
namespace (as it does to a vnet jail's stack on BSD): setting it applies to
every instance running in the caller's namespace and to interfaces created
there later.
`

func cmdSysctl(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sysctl", sysctlUsage, stderr)
	fs.Bool("w", false, "set a value (accepted for compatibility; name=value sets)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one argument: %s or %s=0|1", faithif.KeepFaithName, faithif.KeepFaithName)
	}
	key, value, set := strings.Cut(fs.Arg(0), "=")
	if key != faithif.KeepFaithName {
		return usagef("unknown oid %q (faithif knows only %s)", key, faithif.KeepFaithName)
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return err
	}
	old, err := runDir.KeepFaith()
	if err != nil {
		return err
	}
	if !set {
		fmt.Fprintf(stdout, "%s: %d\n", key, faithif.KeepFaithValue(old))
		return nil
	}
	var on bool
	switch value {
	case "0":
	case "1":
		on = true
	default:
		return usagef("%s=%s: value must be 0 or 1", key, value)
	}
	if err := control.SetKeepFaith(context.Background(), runDir, on); err != nil {
		return err
	}
	if old == on {
		fmt.Fprintf(stdout, "%s: %d (unchanged)\n", key, faithif.KeepFaithValue(on))
		return nil
	}
	fmt.Fprintf(stdout, "%s: %d -> %d\n", key, faithif.KeepFaithValue(old), faithif.KeepFaithValue(on))
	return nil
}

// waitExit waits until process pid has exited (its socket is gone before
// it is: the process still closes its stack and TUN), or ctx ends; it
// reports whether it exited. A pid of this process's own (the appliance
// answers for its interfaces) is not waited for.
func waitExit(ctx context.Context, pid int) bool {
	if pid <= 0 || pid == os.Getpid() {
		return true
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || zombie(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// zombie reports whether process pid has exited and waits to be reaped by
// a parent that is not this process.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
