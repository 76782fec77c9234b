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
	"github.com/faithif/faithif/faithif/systemd"
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

func main() {
	// Under systemd with its output in the journal, every line gets its
	// priority.
	var stderr io.Writer = os.Stderr
	if j := systemd.JournalStderr(); j != nil {
		stderr = j
	}
	os.Exit(run(os.Args[1:], os.Stdout, stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage())
		return exitUsage
	}
	var err error
	known := true
	switch c, ok := lookup(args[0]); {
	case ok:
		err = c.run(args[1:], stdout, stderr)
	case args[0] == "--version" || args[0] == "-V":
		err = cmdVersion(args[1:], stdout, stderr)
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		err = cmdHelp(args[1:], stdout, stderr)
		known = len(args) < 2
	default:
		known = false
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
		if known {
			fmt.Fprintf(stderr, "Run 'faithif %s --help' for usage.\n", args[0])
		} else {
			fmt.Fprintln(stderr, "Run 'faithif help' for the commands.")
		}
		return exitUsage
	default:
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		return exitError
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
// Every command builds its flag set with it; if stderr is a flagRecorder
// (describe), the recorder is given the flag set and the usage.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(&helpBuffer{dst: stderr})
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if r, ok := stderr.(*flagRecorder); ok {
		r.fs, r.usage = fs, usage
	}
	return fs
}

// parseFlags parses args into fs. A bad flag is a usage error of one line,
// naming the command ("create: flag provided but not defined: -frob"); the
// usage text is printed only when asked for (-h, --help).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	hb, _ := fs.Output().(*helpBuffer)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		if hb != nil {
			hb.flush()
		}
	default:
		msg := fs.Name() + ": " + err.Error()
		if err.Error() == "flag provided but not defined: -config" && fs.Lookup("access") != nil {
			msg += " (the access file is --access FILE; --config names faithif.conf, for 'faithif run')"
		}
		return usageError{msg}
	}
	if hb != nil {
		hb.buf.Reset()
	}
	return err
}

// helpBuffer holds what the flag package prints while parsing (the usage
// text, which it prints on any error) until parseFlags knows whether it was
// asked for.
type helpBuffer struct {
	buf strings.Builder
	dst io.Writer
}

// Write implements io.Writer.
func (h *helpBuffer) Write(p []byte) (int, error) { return h.buf.Write(p) }

// flush writes what was held to dst.
func (h *helpBuffer) flush() {
	io.WriteString(h.dst, h.buf.String())
	h.buf.Reset()
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
// config checks them). On a standard error connected to the journal
// (systemd.Journal) each record's line starts with its priority, and has
// no time, which the journal records itself.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format != "json" {
		opts.ReplaceAttr = roundDurations
	}
	j, journal := w.(*systemd.Journal)
	if journal {
		round := opts.ReplaceAttr
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			if round != nil {
				return round(groups, a)
			}
			return a
		}
	}
	handler := func(w io.Writer) slog.Handler {
		if format == "json" {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	if journal {
		return slog.New(j.Handler(handler))
	}
	return slog.New(handler(w))
}
