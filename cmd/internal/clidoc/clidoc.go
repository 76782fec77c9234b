// Package clidoc writes shell completion scripts (bash, zsh) and man pages
// (man(7) roff) from one description of a program's commands and the flag
// sets they parse, so that neither is written by hand beside the program.
package clidoc

import (
	"flag"
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// Command is one subcommand of a program.
type Command struct {
	// Name is the command as typed, e.g. "create".
	Name string
	// Args is what follows the name in the synopsis, e.g. "faithN [flags]".
	Args string
	// Summary says in a line or two what the command does.
	Summary string
	// Help is the command's long help, plain text: paragraphs separated by
	// blank lines, lines indented by a space or more shown as they are.
	Help string
	// Flags are the command's flags (Flags builds them from a flag set).
	Flags []Flag
	// Operands says what each positional argument completes to, in order;
	// arguments beyond the last complete to nothing.
	Operands []Values
	// Hidden commands are left out of the completions and the man page.
	Hidden bool
}

// Flag is one flag of a command, as package flag defines it.
type Flag struct {
	// Name is the flag's name without dashes.
	Name string
	// Usage is its help text.
	Usage string
	// Value names its value ("int", "duration", or the word the usage text
	// quotes in back quotes); empty for a boolean flag, which takes none.
	Value string
	// Default is its default value as text, empty if it is the zero value.
	Default string
	// Repeatable flags may be given more than once.
	Repeatable bool
	// Values says what its value completes to.
	Values Values
}

// Spelling returns the flag as it is offered for completion: -f for a
// one-letter name, --name otherwise (package flag accepts both forms).
func (f Flag) Spelling() string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// Values says what an argument completes to. The zero Values completes to
// nothing (a free value, such as an address).
type Values struct {
	// Words are the candidates.
	Words []string
	// Files completes to file names.
	Files bool
	// Shell is a command (valid in bash and zsh) that prints the
	// candidates, one per line, when the completion is asked for.
	Shell string
}

// repeatable is implemented by flag values that may be given more than
// once (a list).
type repeatable interface{ Repeatable() bool }

// Flags returns the flags fs defines, sorted by name. values, if not nil,
// says what the value of the flag with a given name completes to.
func Flags(fs *flag.FlagSet, values func(name string) Values) []Flag {
	var flags []Flag
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			name = ""
		}
		fl := Flag{Name: f.Name, Usage: usage, Value: name}
		if !isZeroValue(f) {
			fl.Default = f.DefValue
		}
		if r, ok := f.Value.(repeatable); ok {
			fl.Repeatable = r.Repeatable()
		}
		if values != nil {
			fl.Values = values(f.Name)
		}
		flags = append(flags, fl)
	})
	return flags
}

// isZeroValue reports whether f's default is its type's zero value, as
// package flag decides whether PrintDefaults shows it.
func isZeroValue(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	var z reflect.Value
	if t.Kind() == reflect.Pointer {
		z = reflect.New(t.Elem())
	} else {
		z = reflect.Zero(t)
	}
	v, ok := z.Interface().(flag.Value)
	if !ok {
		return false
	}
	return f.DefValue == v.String()
}

// word is what a completion candidate or a command name may be: the
// scripts quote nothing.
var word = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/+-]*$`)

// check returns an error if a name or a candidate could not be written
// into a script unquoted.
func check(prog string, cmds []Command) error {
	if !word.MatchString(prog) {
		return fmt.Errorf("clidoc: program name %q", prog)
	}
	vals := func(where string, v Values) error {
		for _, w := range v.Words {
			if !word.MatchString(w) {
				return fmt.Errorf("clidoc: %s: candidate %q", where, w)
			}
		}
		if strings.Contains(v.Shell, "\n") {
			return fmt.Errorf("clidoc: %s: shell command %q has a newline", where, v.Shell)
		}
		return nil
	}
	for _, c := range cmds {
		if !word.MatchString(c.Name) {
			return fmt.Errorf("clidoc: command name %q", c.Name)
		}
		for i, v := range c.Operands {
			if err := vals(fmt.Sprintf("%s operand %d", c.Name, i+1), v); err != nil {
				return err
			}
		}
		for _, f := range c.Flags {
			if !word.MatchString(f.Name) {
				return fmt.Errorf("clidoc: %s: flag name %q", c.Name, f.Name)
			}
			if err := vals(c.Name+" "+f.Spelling(), f.Values); err != nil {
				return err
			}
		}
	}
	return nil
}

// visible returns the commands that are not hidden.
func visible(cmds []Command) []Command {
	var v []Command
	for _, c := range cmds {
		if !c.Hidden {
			v = append(v, c)
		}
	}
	return v
}

// oneLine joins a text's lines with spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
