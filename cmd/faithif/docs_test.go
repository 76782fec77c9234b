package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/cmd/internal/clidoc"
)

// TestDescribe: every command of the table is described from the flag set
// it parses: the flags --help lists are the ones completed and documented.
func TestDescribe(t *testing.T) {
	cmds, err := describe()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cmds {
		names = append(names, c.Name)
	}
	if want := []string{"create", "run", "destroy", "reload", "rules", "show", "flows", "list", "health", "sysctl", "version", "completion", "man"}; !slices.Equal(names, want) {
		t.Errorf("commands %q, want %q", names, want)
	}
	flag := func(cmd, name string) clidoc.Flag {
		t.Helper()
		for _, c := range cmds {
			if c.Name != cmd {
				continue
			}
			for _, f := range c.Flags {
				if f.Name == name {
					return f
				}
			}
		}
		t.Fatalf("%s has no flag %s", cmd, name)
		return clidoc.Flag{}
	}
	if f := flag("create", "prefix"); !f.Repeatable || f.Value == "" {
		t.Errorf("create --prefix: %+v; want a repeatable value", f)
	}
	if f := flag("create", "mtu"); f.Default != "1500" || f.Value != "int" {
		t.Errorf("create --mtu: %+v; want int, default 1500", f)
	}
	if f := flag("create", "f"); f.Value != "" {
		t.Errorf("create -f: %+v; want a boolean", f)
	}
	for _, cf := range [][2]string{{"run", "config"}, {"create", "access"}, {"rules", "access"}, {"reload", "access"}} {
		if f := flag(cf[0], cf[1]); !f.Values.Files {
			t.Errorf("%s --%s: %+v; want file names", cf[0], cf[1], f)
		}
	}
	if f := flag("create", "log-format"); !slices.Equal(f.Values.Words, []string{"text", "json"}) {
		t.Errorf("create --log-format: %+v; want text, json", f)
	}
	flag("destroy", "grace")
	flag("show", "json")
	flag("sysctl", "w")
	for _, c := range cmds {
		if strings.HasPrefix(c.Help, "usage:") || strings.HasSuffix(strings.TrimSpace(c.Help), "Flags:") || strings.TrimSpace(c.Help) == "" {
			t.Errorf("%s: help %q; want the usage text without its usage line and Flags:", c.Name, c.Help)
		}
	}
}

// TestManPages: faithif(8) has every command's subsection with its flags;
// faithif.conf(5) quotes the example with every key.
func TestManPages(t *testing.T) {
	code, out, stderr := runCmd(t, "man", "faithif.8")
	if code != exitOK {
		t.Fatalf("man faithif.8: exit %d, %s", code, stderr)
	}
	for _, want := range []string{
		`.TH "FAITHIF" 8`,
		`.SS "faithif create faithN [flags]"`,
		`.SS "faithif rules test [faithN] SRC6 [DST6]:PORT"`,
		"\\fB\\-\\-mtu\\fR \\fIint\\fR\ninterface MTU (default 1500)\n",
		"\\fB\\-\\-grace\\fR \\fIduration\\fR\n",
		`.B "NOTIFY_SOCKET"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("faithif.8 has no %q", want)
		}
	}
	code, out, stderr = runCmd(t, "man", "faithif.conf.5")
	if code != exitOK {
		t.Fatalf("man faithif.conf.5: exit %d, %s", code, stderr)
	}
	for _, want := range []string{`.TH "FAITHIF.CONF" 5`, "max_handshakes = 1024\n", "::/0           permit   0.0.0.0/0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("faithif.conf.5 has no %q", want)
		}
	}
}

// TestBashCompletion completes faithif's own command lines with the
// script 'faithif completion bash' prints.
func TestBashCompletion(t *testing.T) {
	code, script, stderr := runCmd(t, "completion", "bash")
	if code != exitOK {
		t.Fatalf("completion bash: exit %d, %s", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "faithif.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"faithif", "cr"}, []string{"create"}},
		{[]string{"faithif", "s"}, []string{"show", "sysctl"}},
		{[]string{"faithif", "create", "faith0", "--max-handshakes-per-"}, []string{"--max-handshakes-per-address", "--max-handshakes-per-client"}},
		{[]string{"faithif", "create", "faith0", "--deny-with", ""}, []string{"icmp6", "rst"}},
		{[]string{"faithif", "create", "--prefix", "64:ff9b::/96", "--log-level", "w"}, []string{"warn"}},
		{[]string{"faithif", "run", "--"}, []string{"--check", "--config", "--metrics"}},
		{[]string{"faithif", "rules", ""}, []string{"test"}},
		{[]string{"faithif", "sysctl", "-w", ""}, []string{"net.inet6.ip6.keepfaith"}},
		{[]string{"faithif", "completion", ""}, []string{"bash", "zsh"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a hang guard
		cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-c",
			`source "$0" && COMP_WORDS=("$@") && COMP_CWORD=$(($# - 1)) && _faithif && printf '%s\n' "${COMPREPLY[@]}"`, path)
		cmd.Args = append(cmd.Args, tc.words...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		cancel()
		if err != nil || errb.Len() > 0 {
			t.Fatalf("%q: %v, stderr %q", tc.words, err, errb.String())
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestMainUsage: the usage lists every command of the table.
func TestMainUsage(t *testing.T) {
	code, out, _ := runCmd(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "\n  "+c.name+" "+c.args) {
			t.Errorf("usage has no line for %s %s:\n%s", c.name, c.args, out)
		}
	}
}
