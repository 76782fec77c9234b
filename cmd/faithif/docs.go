package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/faithif/faithif/cmd/internal/clidoc"
	"github.com/faithif/faithif/deploy"
	"github.com/faithif/faithif/faithif"
)

// The shell completions and the man pages are generated from the commands
// table and from the flag set each command builds and parses: describe.

const completionUsage = `usage: faithif completion bash|zsh

Prints the completion script of bash or zsh for faithif, generated from the
commands and flags faithif parses ('make install' installs both). To try it
in the running shell:
  source <(faithif completion bash)
`

func cmdCompletion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("completion", completionUsage, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want bash or zsh")
	}
	write := map[string]func(io.Writer, string, []clidoc.Command) error{"bash": clidoc.WriteBash, "zsh": clidoc.WriteZsh}[fs.Arg(0)]
	if write == nil {
		return usagef("shell %q: want bash or zsh", fs.Arg(0))
	}
	cmds, err := describe()
	if err != nil {
		return err
	}
	return write(stdout, "faithif", cmds)
}

const manUsage = `usage: faithif man faithif.8|faithif.conf.5

Prints a man page, in roff: faithif(8), the commands and their flags, or
faithif.conf(5), the appliance's configuration file ('make install'
installs both). To read one without installing it:
  faithif man faithif.8 | man -l -
`

func cmdMan(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("man", manUsage, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want faithif.8 or faithif.conf.5")
	}
	var pg clidoc.Page
	switch fs.Arg(0) {
	case "faithif.8":
		cmds, err := describe()
		if err != nil {
			return err
		}
		pg = manFaithif(cmds)
	case "faithif.conf.5":
		pg = manFaithifConf()
	default:
		return usagef("page %q: want faithif.8 or faithif.conf.5", fs.Arg(0))
	}
	return clidoc.WriteMan(stdout, pg)
}

// flagRecorder is the standard error describe gives a command: newFlagSet
// hands it the flag set and the usage text the command builds; what the
// command writes is discarded.
type flagRecorder struct {
	fs    *flag.FlagSet
	usage string
}

// Write implements io.Writer.
func (*flagRecorder) Write(p []byte) (int, error) { return len(p), nil }

// describe returns every command with its flags: each command is run with
// --help and a flagRecorder as its standard error, and what it recorded is
// the very flag set the command parses.
func describe() ([]clidoc.Command, error) {
	var out []clidoc.Command
	for _, c := range commands() {
		rec := &flagRecorder{}
		args := []string{"--help"}
		if c.sub != "" {
			args = append([]string{c.sub}, args...)
		}
		if err := c.run(args, io.Discard, rec); !errors.Is(err, flag.ErrHelp) || rec.fs == nil {
			return nil, fmt.Errorf("describe %s: --help did not show its flag set (%v)", c.name, err)
		}
		out = append(out, clidoc.Command{
			Name: c.name, Args: c.args, Summary: c.summary, Help: helpText(rec.usage),
			Flags: clidoc.Flags(rec.fs, flagValues), Operands: c.operands,
		})
	}
	return out, nil
}

// helpText returns a command's usage text without its first line (the
// synopsis) and the "Flags:" line that ends it.
func helpText(usage string) string {
	_, rest, _ := strings.Cut(usage, "\n")
	rest = strings.TrimRight(rest, "\n")
	return strings.TrimSuffix(rest, "Flags:")
}

// flagValues says what the value of a flag completes to.
func flagValues(name string) clidoc.Values {
	switch name {
	case "config", "access":
		return clidoc.Values{Files: true}
	case "log-format":
		return clidoc.Values{Words: []string{"text", "json"}}
	case "log-level":
		return clidoc.Values{Words: []string{"debug", "info", "warn", "error"}}
	case "deny-with":
		return clidoc.Values{Words: []string{"icmp6", "rst"}}
	}
	return clidoc.Values{}
}

// Repeatable tells clidoc that --prefix may be given more than once.
func (*stringList) Repeatable() bool { return true }

// manFaithif returns the faithif(8) man page.
func manFaithif(cmds []clidoc.Command) clidoc.Page {
	pg := clidoc.Page{
		Name: "faithif", Section: 8, Source: "faithif", Manual: "System Manager's Manual",
		Title: "IPv6-to-IPv4 TCP relay: the BSD faith(4) interface for Linux",
	}
	for _, c := range cmds {
		pg.Synopsis = append(pg.Synopsis, "faithif "+c.Name+" "+c.Args)
	}
	pg.Sections = []clidoc.Section{
		{Title: "DESCRIPTION", Text: `faithif emulates the BSD faith(4) interface, an IPv6-to-IPv4 transport
relay (RFC 3142). IPv6 TCP connections routed to a faithN interface (a TUN
device) are terminated in userspace by a gVisor netstack, and each one is
relayed to the IPv4 address embedded in its destination (RFC 6052) over an
ordinary IPv4 socket of the router: bytes, half-close, resets and refusals
included. Access rules in faithd.conf syntax say which clients may reach
which IPv4 destinations.

Nothing is captured until the switch net.inet6.ip6.keepfaith is 1, as on
BSD (one switch per network namespace, as a vnet jail has its own):
  faithif create faith0 --prefix 64:ff9b::/96 --route
  faithif sysctl net.inet6.ip6.keepfaith=1

'faithif create' runs one interface; 'faithif run' runs the whole router
(interfaces, routes, sysctls) that a faithif.conf(5) file describes. The
other commands talk to running instances through their control sockets.`},
		{Title: "COMMANDS", Commands: cmds, Prog: "faithif"},
		{Title: "SYSTEMD", Text: `Under systemd, run 'faithif create faithN --foreground' or 'faithif
run' as a Type=notify service: faithif sends READY=1 once its interfaces
read packets, RELOADING=1 then READY=1 around a reload (SIGHUP, or
'faithif reload'), STOPPING=1 when it starts draining, and a STATUS= line
with each that 'systemctl status' shows. Without --foreground, 'faithif
create' returns once the instance it starts in the background is ready,
and tells systemd so itself, naming that instance as the main process
(MAINPID=); its log then goes to the run directory, not to the journal.
When standard error is connected to the journal, every log line carries
its priority. The units faithif@.service (one interface) and
faithif.service (the appliance) are installed by 'make install'.`},
		{Title: "ENVIRONMENT", Items: []clidoc.Item{
			{Tag: "FAITHIF_RUN_DIR", Text: fmt.Sprintf(`The run directory: the control sockets faithN.sock, the stored
keepfaith value, and the logs of background instances, faithN.log,
rotated at %d MB with %d older ones kept. By default each network namespace
has its own: /run/faithif in PID 1's, /run/faithif/netns/COOKIE in any
other. It, and every file in it, must be owned by root or by the user
faithif runs as, and be writable by nobody else.`, faithif.LogMaxMB, faithif.LogBackups)},
			{Tag: "NOTIFY_SOCKET", Text: `Set by systemd for a Type=notify service: where readiness, reloads and
stopping are announced (sd_notify(3)).`},
			{Tag: "JOURNAL_STREAM", Text: `Set by systemd when the service's output goes to the journal. If it
names standard error's device and inode, each line starts with its
syslog priority (sd-daemon(3)) and log lines carry no time.`},
		}},
		{Title: "FILES", Items: []clidoc.Item{
			{Tag: "/etc/faithif/faithif.conf", Text: "The appliance's configuration, for 'faithif run --config'; see faithif.conf(5)."},
			{Tag: "/etc/faithif/faithd.conf", Text: "An access file, for 'faithif create --access' and faithif.conf's rules key."},
			{Tag: "/run/faithif", Text: "The run directory of PID 1's network namespace; /run/faithif/netns/COOKIE, that of another (FAITHIF_RUN_DIR)."},
		}},
		{Title: "EXIT STATUS", Text: `0 on success, 1 on an error (the message names what is wrong), 2 on a
usage error.`},
		{Title: "SEE ALSO", Text: `faithif.conf(5), systemd.service(5), sd_notify(3), ip(8); faith(4) and
faithd(8) on BSD; RFC 3142, RFC 6052.`},
	}
	return pg
}

// manFaithifConf returns the faithif.conf(5) man page: what the file is,
// then the commented example with every key, then the access file.
func manFaithifConf() clidoc.Page {
	return clidoc.Page{
		Name: "faithif.conf", Section: 5, Source: "faithif", Manual: "File Formats Manual",
		Title:    "configuration of the faithif router appliance",
		Synopsis: []string{"/etc/faithif/faithif.conf"},
		Sections: []clidoc.Section{
			{Title: "DESCRIPTION", Text: `'faithif run --config FILE' runs the whole FAITH router that FILE
describes: the global keepfaith switch, the kernel parameters the router
needs ([sysctl]), one [[interface]] table per faithN interface with its
prefixes, access file, limits and [[interface.route]]s, the log format and
level, and the address of the Prometheus metrics.

The file is TOML, read in strict mode: a misspelt key is an error. The
whole file is checked before anything changes, and every error names the
file, the line and the key, e.g.
  faithif.conf:8: interface.mtu: mtu 900: must be between 1280 (IPv6 minimum) and 65535
'faithif run --check' checks a file and prints what it would do.

Starting applies the file: sysctls, keepfaith, then each interface and its
routes. SIGTERM drains every interface and removes exactly what was
applied. SIGHUP rereads every interface's access file; other changes need
a restart.`},
			{Title: "KEYS", Text: "Every key, with its meaning and default, in the commented example\n(deploy/faithif.conf):", Literal: deploy.FaithifConf()},
			{Title: "ACCESS FILE", Text: `An access file (the rules key; 'faithif create --access') has the
lines of BSD's faithd.conf: SRC6[/PLEN] permit|deny DST4[/PLEN] [BIND4]
(the client's IPv6 source, the action, the IPv4 destination, optionally
the IPv4 address to connect from), and as an extension a port or a range
after the destination, DST4[/PLEN][:PORT[-PORT]]. # starts a comment. The
first line that matches decides; no match denies, so a file with no rule
denies every flow. A line with an error rejects the whole file. For
example:`, Literal: deploy.FaithdConf()},
			{Title: "SEE ALSO", Text: "faithif(8), faithd.conf(5) on BSD, https://toml.io"},
		},
	}
}
