package clidoc

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// list is a repeatable flag value.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }
func (l *list) Repeatable() bool   { return true }

// example is a program "prog" with two commands, described from real flag
// sets.
func example() []Command {
	fs := flag.NewFlagSet("make", flag.ContinueOnError)
	fs.Var(&list{}, "tag", "a tag (repeatable)")
	fs.Int("size", 1500, "the size")
	fs.Int("zero", 0, "an int whose default is not shown")
	fs.Bool("f", false, "stay in the foreground")
	fs.String("config", "", "read `FILE` instead")
	fs.String("format", "text", "output format: text or json")
	values := func(name string) Values {
		switch name {
		case "config":
			return Values{Files: true}
		case "format":
			return Values{Words: []string{"text", "json"}}
		}
		return Values{}
	}
	rm := flag.NewFlagSet("remove", flag.ContinueOnError)
	rm.Duration("grace", 10*time.Second, "wait this long")
	return []Command{
		{Name: "make", Args: "NAME [flags]", Summary: "make a thing", Help: "Makes NAME.\n\nFor example:\n  prog make a --size 9\n",
			Flags: Flags(fs, values), Operands: []Values{{}}},
		{Name: "remove", Args: "NAME", Summary: "remove a thing", Flags: Flags(rm, nil),
			Operands: []Values{{Shell: "printf '%s\\n' thing1 thing2"}, {Words: []string{"now", "later"}}}},
		{Name: "secret", Summary: "not offered", Hidden: true},
	}
}

// TestFlags: what Flags reads from a flag set: names, value names (back
// quotes included), defaults that are not zero, booleans, repeatable
// values, and the completions asked for.
func TestFlags(t *testing.T) {
	got := example()[0].Flags
	want := []Flag{
		{Name: "config", Usage: "read FILE instead", Value: "FILE", Values: Values{Files: true}},
		{Name: "f", Usage: "stay in the foreground"},
		{Name: "format", Usage: "output format: text or json", Value: "string", Default: "text", Values: Values{Words: []string{"text", "json"}}},
		{Name: "size", Usage: "the size", Value: "int", Default: "1500"},
		{Name: "tag", Usage: "a tag (repeatable)", Value: "value", Repeatable: true},
		{Name: "zero", Usage: "an int whose default is not shown", Value: "int"},
	}
	if len(got) != len(want) {
		t.Fatalf("flags %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Usage != w.Usage || g.Value != w.Value || g.Default != w.Default || g.Repeatable != w.Repeatable ||
			g.Values.Files != w.Values.Files || !slices.Equal(g.Values.Words, w.Values.Words) {
			t.Errorf("flag %d: %+v, want %+v", i, g, w)
		}
	}
	if got[1].Spelling() != "-f" || got[0].Spelling() != "--config" {
		t.Errorf("spellings %s, %s; want -f, --config", got[1].Spelling(), got[0].Spelling())
	}
}

// complete runs the bash completion script for prog on words (the last
// one being completed) and returns the candidates.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "--norc", "--noprofile", "-c",
		`source "$0" && COMP_WORDS=("$@") && COMP_CWORD=$(($# - 1)) && _prog && printf '%s\n' "${COMPREPLY[@]}"`,
		script)
	cmd.Args = append(cmd.Args, words...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("completing %q: %v, stderr %q", words, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// TestWriteBash completes command lines of the example program with the
// script WriteBash writes, in bash.
func TestWriteBash(t *testing.T) {
	var b bytes.Buffer
	if err := WriteBash(&b, "prog", example()); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "prog.bash")
	if err := os.WriteFile(script, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"conf.toml", "config.d"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"prog", ""}, []string{"make", "remove"}}, // not the hidden one
		{[]string{"prog", "m"}, []string{"make"}},
		{[]string{"prog", "se"}, nil},
		{[]string{"prog", "make", "-"}, []string{"--config", "-f", "--format", "--size", "--tag", "--zero"}},
		{[]string{"prog", "make", "--f"}, []string{"--format"}},
		{[]string{"prog", "make", "--format", ""}, []string{"text", "json"}},
		{[]string{"prog", "make", "-format", "j"}, []string{"json"}},
		{[]string{"prog", "make", "--config", dir + "/con"}, []string{dir + "/conf.toml", dir + "/config.d"}},
		{[]string{"prog", "make", "--size", ""}, nil}, // a free value
		{[]string{"prog", "make", "a", "--size", "9", ""}, nil},
		{[]string{"prog", "remove", ""}, []string{"thing1", "thing2"}},
		{[]string{"prog", "remove", "--grace", "1s", "th"}, []string{"thing1", "thing2"}},
		{[]string{"prog", "remove", "--grace", "=", "1s", "thing1", "l"}, []string{"later"}},
		{[]string{"prog", "remove", "-f", "thing1", ""}, []string{"now", "later"}}, // -f is not remove's: no value
		{[]string{"prog", "remove", "a", "b", ""}, nil},
		{[]string{"prog", "nothing", ""}, nil},
	} {
		if got := complete(t, script, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestWriteZsh checks the zsh function's specs: commands with summaries,
// flags with descriptions and values (repeatable ones starred), operands,
// a function for each shell command.
func TestWriteZsh(t *testing.T) {
	var b bytes.Buffer
	if err := WriteZsh(&b, "prog", example()); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{
		"#compdef prog\n",
		"\t\t'make:make a thing'\n",
		"\t\t'remove:remove a thing'\n",
		`'--config=[read FILE instead]:FILE:_files'`,
		`'-f[stay in the foreground]'`,
		`'--format=[output format\: text or json]:string:(text json)'`,
		`'*--tag=[a tag (repeatable)]:value: '`,
		`'1:argument: '`,
		"_prog_values_1() {\n\tcompadd -- ${(f)\"$(printf '%s\\n' thing1 thing2)\"}\n}\n",
		`'1:argument:_prog_values_1'`,
		`'2:argument:(now later)'`,
		"\n_prog \"$@\"\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "secret") {
		t.Errorf("the hidden command is offered:\n%s", s)
	}
}

// TestWriteMan checks the roff: header, escapes (hyphens, backslashes, a
// line starting with a dot), paragraphs and literal blocks, the commands'
// subsections with their flags and defaults.
func TestWriteMan(t *testing.T) {
	var b bytes.Buffer
	pg := Page{
		Name: "prog", Section: 8, Title: "does things", Source: "prog", Manual: "System Manager's Manual",
		Synopsis: []string{"prog make NAME [flags]"},
		Sections: []Section{
			{Title: "DESCRIPTION", Text: "A line\nwith a back\\slash.\n.dotted line\n\n  literal --flag\n  second\n\nAfter."},
			{Title: "ENVIRONMENT", Items: []Item{{Tag: "PROG_DIR", Text: "Where.\n\nMore."}}},
			{Title: "EXAMPLE", Text: "The file:", Literal: "key = \"v\" # -x\n\tindented\n"},
			{Title: "COMMANDS", Commands: example(), Prog: "prog"},
		},
	}
	if err := WriteMan(&b, pg); err != nil {
		t.Fatal(err)
	}
	want := `.\" Generated from the program's own description of its commands; do not edit.
.TH "PROG" 8 "" "prog" "System Manager's Manual"
.SH NAME
prog \- does things
.SH SYNOPSIS
.B "prog"
make NAME [flags]
.SH "DESCRIPTION"
.PP
A line
with a back\eslash.
\&.dotted line
.PP
.RS 4
.nf
literal \-\-flag
second
.fi
.RE
.PP
After.
.SH "ENVIRONMENT"
.TP
.B "PROG_DIR"
Where.
.IP
More.
.SH "EXAMPLE"
.PP
The file:
.PP
.RS 4
.nf
key = "v" # \-x
        indented
.fi
.RE
.SH "COMMANDS"
.SS "prog make NAME [flags]"
.PP
Makes NAME.
.PP
For example:
.PP
.RS 4
.nf
prog make a \-\-size 9
.fi
.RE
.TP
\fB\-\-config\fR \fIFILE\fR
read FILE instead
.TP
\fB\-f\fR
stay in the foreground
.TP
\fB\-\-format\fR \fIstring\fR
output format: text or json (default text)
.TP
\fB\-\-size\fR \fIint\fR
the size (default 1500)
.TP
\fB\-\-tag\fR \fIvalue\fR
a tag (repeatable)
.TP
\fB\-\-zero\fR \fIint\fR
an int whose default is not shown
.SS "prog remove NAME"
.PP
remove a thing
.TP
\fB\-\-grace\fR \fIduration\fR
wait this long (default 10s)
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestCheck: names and candidates that a script could not hold unquoted
// are errors, not broken scripts.
func TestCheck(t *testing.T) {
	for _, cmds := range [][]Command{
		{{Name: "two words"}},
		{{Name: "make", Operands: []Values{{Words: []string{"it's"}}}}},
		{{Name: "make", Flags: []Flag{{Name: "a b"}}}},
		{{Name: "make", Flags: []Flag{{Name: "x", Values: Values{Words: []string{"$(reboot)"}}}}}},
		{{Name: "make", Operands: []Values{{Shell: "echo a\necho b"}}}},
	} {
		if err := WriteBash(&bytes.Buffer{}, "prog", cmds); err == nil {
			t.Errorf("WriteBash(%+v): no error", cmds)
		}
		if err := WriteZsh(&bytes.Buffer{}, "prog", cmds); err == nil {
			t.Errorf("WriteZsh(%+v): no error", cmds)
		}
	}
}
