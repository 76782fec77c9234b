package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/faithif/faithif/faithif"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// silentError has been reported elsewhere; it only sets the exit status.
type silentError struct{ error }

// troubleError is an error of a command whose exit status 1 means an answer
// (rules test: deny), so that trouble is exit status 2, as in grep.
type troubleError struct{ error }

// usageError is an error in the command line: exit status 2.
type usageError struct{ msg string }

// Error implements error.
func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

const mainUsage = `usage: faithif <command> [arguments]

Commands:
  create faithN [flags]     create the interface and relay what is routed to it
  run --config FILE         the router appliance: every interface, route and
                            sysctl in FILE, in the foreground (containers)
  destroy faithN [--grace D] drain open flows, stop the instance, remove the interface
  reload faithN             reread the access file (as SIGHUP does)
  rules test [faithN] SRC6 [DST6]:PORT
                            which access rule decides a flow, and why
  show [faithN] [--json]    state and counters of running instances
  flows [faithN] [--client C] [--dest D] [--json]
                            the flows being set up or relayed, one line each
  list [--json]             the same as show, for every instance
  health [faithN]           exit 0 if the interfaces relay, else 1 and why
                            (container health checks)
  sysctl [-w] net.inet6.ip6.keepfaith[=0|1]
                            read or set the capture switch (per network
                            namespace, default 0)

Run 'faithif <command> --help' for a command's flags.
Environment: FAITHIF_RUN_DIR holds control sockets, the keepfaith value
and background logs; by default each network namespace has its own:
/run/faithif in PID 1's, /run/faithif/netns/COOKIE in any other.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "create":
		err = cmdCreate(args[1:], stdout, stderr)
	case "destroy":
		err = cmdDestroy(args[1:], stdout, stderr)
	case "show", "list":
		err = cmdShow(args[0], args[1:], stdout, stderr)
	case "flows":
		err = cmdFlows(args[1:], stdout, stderr)
	case "sysctl":
		err = cmdSysctl(args[1:], stdout, stderr)
	case "reload":
		err = cmdReload(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "rules":
		err = cmdRules(args[1:], stdout, stderr)
	case "health":
		err = cmdHealth(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	default:
		err = usagef("unknown command %q", args[0])
	}
	var ue usageError
	var se silentError
	var re reportedError
	var te troubleError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &te):
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		return exitUsage
	case errors.As(err, &se):
		return exitError
	case errors.As(err, &re):
		fmt.Fprintln(stderr, err)
		return exitError
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		fmt.Fprintf(stderr, "Run 'faithif %s --help' for usage.\n", firstWord(args))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		return exitError
	}
}

func firstWord(args []string) string {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return ""
	}
	return args[0]
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs; a bad flag is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return usageError{err.Error()}
	}
	return err
}

// parseWithName parses flags that may come before or after one positional
// interface name. required says whether the name must be there.
func parseWithName(fs *flag.FlagSet, args []string, required bool) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", usagef("unexpected argument %q", rest[0])
	}
	if name == "" && required {
		return "", usagef("missing interface name (e.g. faith0)")
	}
	if name != "" {
		if err := faithif.ValidateName(name); err != nil {
			return "", usageError{err.Error()}
		}
	}
	return name, nil
}

// newLogger returns the logger of a checked log format and level (package
// config checks them).
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	opts.ReplaceAttr = roundDurations
	return slog.New(slog.NewTextHandler(w, opts))
}
