package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/faithif/faithif/cmd/internal/clidoc"
	"github.com/faithif/faithif/faithif"
)

// command is one faithif subcommand. The table of them (commands) is what
// run dispatches on and what the main usage lists; with the flag set each
// command builds for itself (describe) it is also what the shell
// completions and the man page are generated from.
type command struct {
	name    string
	args    string // its arguments, as the usage shows them
	summary string // what it does; lines after the first are indented
	// sub is a word that must come first for the command to build its
	// flag set ("test" for rules).
	sub string
	// operands says what its positional arguments complete to.
	operands []clidoc.Values
	run      func(args []string, stdout, stderr io.Writer) error
}

// commands returns every subcommand, in the order the usage lists them.
func commands() []command {
	// The faith interfaces of the caller's network namespace.
	ifaces := clidoc.Values{Shell: "ls /sys/class/net 2>/dev/null | grep '^faith[0-9]'"}
	return []command{
		{name: "create", args: "faithN [flags]", run: cmdCreate, operands: []clidoc.Values{{}},
			summary: "create the interface and relay what is routed to it"},
		{name: "run", args: "--config FILE", run: cmdRun,
			summary: "the router appliance: every interface, route and\nsysctl in FILE, in the foreground (containers)"},
		{name: "destroy", args: "faithN [--grace D]", run: cmdDestroy, operands: []clidoc.Values{ifaces},
			summary: "drain open flows, stop the instance, remove the interface"},
		{name: "reload", args: "faithN", run: cmdReload, operands: []clidoc.Values{ifaces},
			summary: "reread the access file (as SIGHUP does)"},
		{name: "rules", args: "test [faithN] SRC6 [DST6]:PORT", run: cmdRules, sub: "test",
			operands: []clidoc.Values{{Words: []string{"test"}}, ifaces},
			summary:  "which access rule decides a flow, and why"},
		{name: "show", args: "[faithN] [--json]", operands: []clidoc.Values{ifaces},
			run: func(args []string, stdout, stderr io.Writer) error {
				return cmdShow("show", args, stdout, stderr)
			},
			summary: "state and counters of running instances"},
		{name: "flows", args: "[faithN] [--client C] [--dest D] [--json]", run: cmdFlows, operands: []clidoc.Values{ifaces},
			summary: "the flows being set up or relayed, one line each"},
		{name: "list", args: "[--json]",
			run: func(args []string, stdout, stderr io.Writer) error {
				return cmdShow("list", args, stdout, stderr)
			},
			summary: "the same as show, for every instance"},
		{name: "health", args: "[faithN]", run: cmdHealth, operands: []clidoc.Values{ifaces},
			summary: "exit 0 if the interfaces relay, else 1 and why\n(container health checks)"},
		{name: "sysctl", args: "[-w] " + faithif.KeepFaithName + "[=0|1]", run: cmdSysctl,
			operands: []clidoc.Values{{Words: []string{faithif.KeepFaithName}}},
			summary:  "read or set the capture switch (per network\nnamespace, default 0)"},
		{name: "version", args: "[--json]", run: cmdVersion,
			summary: "print the version and the commit it was built from\n(also: faithif --version)"},
		{name: "completion", args: "bash|zsh", run: cmdCompletion,
			operands: []clidoc.Values{{Words: []string{"bash", "zsh"}}},
			summary:  "print the shell completion script"},
		{name: "man", args: "faithif.8|faithif.conf.5", run: cmdMan,
			operands: []clidoc.Values{{Words: []string{"faithif.8", "faithif.conf.5"}}},
			summary:  "print a man page (roff)"},
	}
}

// lookup returns the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// mainUsage returns the usage faithif prints without a command, or with
// help.
func mainUsage() string {
	var b strings.Builder
	b.WriteString("usage: faithif <command> [arguments]\n\nCommands:\n")
	const width = 25 // of the first column
	for _, c := range commands() {
		head := c.name + " " + c.args
		lines := strings.Split(c.summary, "\n")
		if len(head) > width+1 {
			fmt.Fprintf(&b, "  %s\n", head)
			head = ""
		}
		fmt.Fprintf(&b, "  %-*s %s\n", width, head, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "  %-*s %s\n", width, "", l)
		}
	}
	b.WriteString(`
Run 'faithif help <command>' (or 'faithif <command> --help') for a
command's flags.
Environment: FAITHIF_RUN_DIR holds control sockets, the keepfaith value
and background logs; by default each network namespace has its own:
/run/faithif in PID 1's, /run/faithif/netns/COOKIE in any other.
`)
	return b.String()
}
