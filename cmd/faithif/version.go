package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/faithif/faithif/faithif/buildinfo"
)

const versionUsage = `usage: faithif version [--json]

Prints which faithif this is: its module version, the commit it was built
from (with -dirty if the checkout had uncommitted changes), that commit's
time and the Go version, read from the binary's own build information.
faithif --version prints the same. The faithif_build_info metric has the
same labels.

Flags:
`

// cmdVersion runs 'faithif version' (and 'faithif --version').
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", versionUsage, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version: unexpected argument %q", fs.Arg(0))
	}
	in := buildinfo.Read()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	_, err := fmt.Fprintln(stdout, in)
	return err
}

// cmdHelp runs 'faithif help [COMMAND]': the commands, or one command's
// help, as 'faithif COMMAND --help' prints it.
func cmdHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		_, err := fmt.Fprint(stdout, mainUsage())
		return err
	}
	c, ok := lookup(args[0])
	if !ok {
		return usagef("help: unknown command %q", args[0])
	}
	if len(args) > 1 {
		return usagef("help: unexpected argument %q (want 'faithif help %s')", args[1], c.name)
	}
	help := []string{"--help"}
	if c.sub != "" {
		help = append([]string{c.sub}, help...)
	}
	return c.run(help, stdout, stderr)
}
