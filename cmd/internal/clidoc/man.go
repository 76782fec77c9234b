package clidoc

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Page is a man page.
type Page struct {
	// Name is the page's name, e.g. "faithif" or "faithif.conf".
	Name string
	// Section is the manual section, e.g. 8.
	Section int
	// Title is the NAME line's description: "NAME \- TITLE".
	Title string
	// Source and Manual are the footer's and the header's middle texts,
	// e.g. "faithif" and "System Manager's Manual".
	Source, Manual string
	// Synopsis lines, each shown as it is (the first word bold).
	Synopsis []string
	// Sections follow SYNOPSIS in order.
	Sections []Section
}

// Section is one section of a man page: text, then a tagged list, then a
// literal block, then commands, each if given.
type Section struct {
	// Title is the section's heading, e.g. "DESCRIPTION".
	Title string
	// Text is plain text: paragraphs separated by blank lines; lines
	// indented by a space or more are shown as they are.
	Text string
	// Items are shown as a tagged list.
	Items []Item
	// Literal is shown as it is, indented (a file's contents, say).
	Literal string
	// Commands are shown one subsection each: synopsis, help, flags.
	Commands []Command
	// Prog is the program name the commands' subsections start with.
	Prog string
}

// Item is one entry of a tagged list.
type Item struct {
	Tag  string // shown bold
	Text string // as Section.Text
}

// WriteMan writes the page in man(7) roff, as man(1), mandoc and groff
// render it.
func WriteMan(w io.Writer, pg Page) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p(".\\\" Generated from the program's own description of its commands; do not edit.\n")
	p(".TH %s %d \"\" %s %s\n", macroArg(strings.ToUpper(pg.Name)), pg.Section, macroArg(pg.Source), macroArg(pg.Manual))
	p(".SH NAME\n%s \\- %s\n", escape(pg.Name), escape(oneLine(pg.Title)))
	if len(pg.Synopsis) > 0 {
		p(".SH SYNOPSIS\n")
		for i, s := range pg.Synopsis {
			if i > 0 {
				p(".br\n")
			}
			synopsisLine(b, s)
		}
	}
	for _, s := range pg.Sections {
		p(".SH %s\n", macroArg(s.Title))
		if s.Text != "" {
			text(b, s.Text, ".PP")
		}
		for _, it := range s.Items {
			p(".TP\n.B %s\n", macroArg(it.Tag))
			text(b, it.Text, ".IP")
		}
		if s.Literal != "" {
			p(".PP\n")
			literal(b, strings.Split(strings.TrimRight(s.Literal, "\n"), "\n"))
		}
		for _, c := range visible(s.Commands) {
			command(b, s.Prog, c)
		}
	}
	return b.Flush()
}

// synopsisLine writes "prog command args" with the first words bold.
func synopsisLine(b *bufio.Writer, s string) {
	head, rest, _ := strings.Cut(s, " ")
	fmt.Fprintf(b, ".B %s\n", macroArg(head))
	if rest != "" {
		b.WriteString(escapeLine(rest) + "\n")
	}
}

// command writes a command's subsection: its synopsis as the heading, its
// help, and its flags as a tagged list.
func command(b *bufio.Writer, prog string, c Command) {
	head := strings.TrimSpace(prog + " " + c.Name + " " + oneLine(c.Args))
	fmt.Fprintf(b, ".SS %s\n", macroArg(head))
	help := c.Help
	if strings.TrimSpace(help) == "" {
		help = c.Summary
	}
	text(b, help, ".PP")
	for _, f := range c.Flags {
		tag := "\\fB" + escape(f.Spelling()) + "\\fR"
		if f.Value != "" {
			tag += " \\fI" + escape(f.Value) + "\\fR"
		}
		fmt.Fprintf(b, ".TP\n%s\n", tag)
		u := oneLine(f.Usage)
		if f.Default != "" {
			u += fmt.Sprintf(" (default %s)", f.Default)
		}
		b.WriteString(escapeLine(u) + "\n")
	}
}

// text writes plain text (see Section.Text) as roff paragraphs and
// literal blocks, each started with the macro para (.PP, or .IP to stay
// indented in a tagged list, where the first one needs none).
func text(b *bufio.Writer, s, para string) {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	first := true
	begin := func() {
		if !first || para != ".IP" {
			b.WriteString(para + "\n")
		}
		first = false
	}
	for i := 0; i < len(lines); {
		switch {
		case strings.TrimSpace(lines[i]) == "":
			i++
		case lines[i][0] == ' ' || lines[i][0] == '\t':
			j := i
			for j < len(lines) && strings.TrimSpace(lines[j]) != "" && (lines[j][0] == ' ' || lines[j][0] == '\t') {
				j++
			}
			begin()
			literal(b, dedent(lines[i:j]))
			i = j
		default:
			begin()
			for ; i < len(lines) && strings.TrimSpace(lines[i]) != "" && lines[i][0] != ' ' && lines[i][0] != '\t'; i++ {
				b.WriteString(escapeLine(strings.TrimSpace(lines[i])) + "\n")
			}
		}
	}
}

// literal writes lines unfilled, indented.
func literal(b *bufio.Writer, lines []string) {
	b.WriteString(".RS 4\n.nf\n")
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(escapeLine(strings.ReplaceAll(l, "\t", "        ")) + "\n")
	}
	b.WriteString(".fi\n.RE\n")
}

// dedent removes the indentation the lines share.
func dedent(lines []string) []string {
	common := -1
	for _, l := range lines {
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l[common:]
	}
	return out
}

// escape escapes roff's special characters in running text: the
// backslash, and the hyphen, which would otherwise print as a typographic
// hyphen that cannot be copied into a shell.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// escapeLine escapes a text line, which must not start with a control
// character (a dot or an apostrophe).
func escapeLine(s string) string {
	s = escape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// macroArg quotes a macro's argument.
func macroArg(s string) string {
	return `"` + strings.ReplaceAll(escape(s), `"`, `\(dq`) + `"`
}
