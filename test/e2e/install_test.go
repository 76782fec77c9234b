package e2e

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

	"github.com/faithif/faithif/test/netlab"
)

// Tests of "make install": what it installs, and that the installed man
// pages, completions and systemd units work with the tools that read them
// (man, groff, bash, zsh, systemd-analyze; test/scripts/install-deps.sh
// installs them).

// makeInstall runs "make install VARS..." in the module root, with the
// generated pages and completions in a temporary directory, and returns
// the module root.
func makeInstall(t *testing.T, vars ...string) string {
	t.Helper()
	root, err := netlab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard
	defer cancel()
	args := append([]string{"--no-print-directory", "-C", root, "install", "DOCDIR=" + t.TempDir()}, vars...)
	if out, err := exec.CommandContext(ctx, "make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return root
}

// tool returns the path of a program the test needs: a missing one fails
// the test (install-deps.sh installs it).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed (test/scripts/install-deps.sh installs it): %v", name, err)
	}
	return p
}

// runTool runs a program with a hang guard and returns its standard output
// and error.
func runTool(t *testing.T, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestMakeInstall installs into a temporary DESTDIR: the binary, both
// units (naming the installed binary), both man pages, both completions,
// and the example configuration, which a second install leaves as the
// operator edited it. man renders the pages (groff without a warning);
// bash completes "faithif cr" to "create", and zsh too.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	root := makeInstall(t, "DESTDIR="+dest)
	files := map[string]os.FileMode{
		"usr/local/bin/faithif":                               0o755,
		"usr/local/lib/systemd/system/faithif.service":        0o644,
		"usr/local/lib/systemd/system/faithif@.service":       0o644,
		"usr/local/share/man/man8/faithif.8":                  0o644,
		"usr/local/share/man/man5/faithif.conf.5":             0o644,
		"usr/local/share/bash-completion/completions/faithif": 0o644,
		"usr/local/share/zsh/site-functions/_faithif":         0o644,
		"etc/faithif/faithif.conf":                            0o644,
		"etc/faithif/faithd.conf":                             0o644,
	}
	var installed []string
	filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, p)
			installed = append(installed, rel)
		}
		return nil
	})
	var want []string
	for f := range files {
		want = append(want, f)
	}
	slices.Sort(want)
	slices.Sort(installed)
	if !slices.Equal(installed, want) {
		t.Errorf("installed %q\nwant %q", installed, want)
	}
	for f, mode := range files {
		if fi, err := os.Stat(filepath.Join(dest, f)); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v (%v); want mode %v", f, fi, err, mode)
		}
	}
	for _, u := range []string{"faithif.service", "faithif@.service"} {
		b, _ := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system", u))
		if !strings.Contains(string(b), "\nType=notify\n") || !strings.Contains(string(b), "\nExecStart=/usr/local/bin/faithif ") {
			t.Errorf("%s: want Type=notify and ExecStart=/usr/local/bin/faithif ...:\n%s", u, b)
		}
	}
	for _, f := range []string{"faithif.conf", "faithd.conf"} {
		got, _ := os.ReadFile(filepath.Join(dest, "etc/faithif", f))
		src, _ := os.ReadFile(filepath.Join(root, "deploy", f))
		if !bytes.Equal(got, src) {
			t.Errorf("installed %s differs from deploy/%s", f, f)
		}
	}

	// A second install keeps the operator's configuration.
	conf := filepath.Join(dest, "etc/faithif/faithif.conf")
	writeFile(t, conf, "# mine\n")
	makeInstall(t, "DESTDIR="+dest)
	if b, _ := os.ReadFile(conf); string(b) != "# mine\n" {
		t.Errorf("a second install replaced the edited faithif.conf: %q", b)
	}

	// The man pages render, without a warning.
	for page, want := range map[string]string{
		"usr/local/share/man/man8/faithif.8":      "faithif create faithN [flags]",
		"usr/local/share/man/man5/faithif.conf.5": "max_handshakes = 1024",
	} {
		path := filepath.Join(dest, page)
		out, stderr, err := runTool(t, []string{"MANWIDTH=80"}, "man", "-l", path)
		if err != nil || stderr != "" || !strings.Contains(out, want) {
			t.Errorf("man -l %s: %v, stderr %q; want %q in:\n%s", page, err, stderr, want, out)
		}
		if _, stderr, err := runTool(t, nil, "groff", "-man", "-ww", "-z", path); err != nil || stderr != "" {
			t.Errorf("groff -man -ww %s: %v: %s", page, err, stderr)
		}
	}

	// bash: "faithif cr<TAB>".
	bashComp := filepath.Join(dest, "usr/local/share/bash-completion/completions/faithif")
	out, stderr, err := runTool(t, nil, "bash", "--norc", "--noprofile", "-c",
		`source "$0" && COMP_WORDS=(faithif cr) && COMP_CWORD=1 && _faithif && printf '%s\n' "${COMPREPLY[@]}"`, bashComp)
	if err != nil || stderr != "" || out != "create\n" {
		t.Errorf("bash completion of 'faithif cr': %q, %v, stderr %q; want create", out, err, stderr)
	}

	// zsh: the function parses, and completes "faithif cr<TAB>" in an
	// interactive zsh (on a pseudo-terminal) to "faithif create".
	zshDir := filepath.Join(dest, "usr/local/share/zsh/site-functions")
	if _, stderr, err := runTool(t, nil, "zsh", "-n", filepath.Join(zshDir, "_faithif")); err != nil || stderr != "" {
		t.Errorf("zsh -n _faithif: %v: %s", err, stderr)
	}
	script := `zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PROMPT="> "; fpath=(` + zshDir + ` $fpath); autoload -U compinit; compinit -u -D'
zpty -w -n z $'faithif cr\t'
zpty -r z out '*faithif create*' && print -r -- completed
zpty -d z
`
	if out, stderr, err := runTool(t, nil, "zsh", "-f", "-c", script); err != nil || !strings.Contains(out, "completed") {
		t.Errorf("zsh completion of 'faithif cr': %v, stdout %q, stderr %q; want faithif create", err, out, stderr)
	}
}

// TestUnitsVerify: systemd-analyze verify finds nothing wrong with either
// installed unit: the binary they name exists, the man pages their
// Documentation= names exist.
func TestUnitsVerify(t *testing.T) {
	prefix := t.TempDir()
	// The units name the installed binary: a real prefix, not a DESTDIR,
	// so that it exists where they say.
	makeInstall(t, "PREFIX="+prefix+"/usr", "SYSCONFDIR="+prefix+"/etc")
	units := filepath.Join(prefix, "usr/lib/systemd/system")
	for _, u := range []string{"faithif.service", "faithif@.service"} {
		path := filepath.Join(units, u)
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), "ExecStart="+prefix+"/usr/bin/faithif ") {
			t.Errorf("%s: ExecStart does not name %s/usr/bin/faithif:\n%s", u, prefix, b)
		}
		out, stderr, err := runTool(t, []string{"MANPATH=" + prefix + "/usr/share/man"}, "systemd-analyze", "verify", path)
		if err != nil || out != "" || stderr != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s%s", u, err, out, stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(prefix, "etc/faithif/faithif.conf")); !strings.Contains(string(b), `rules = "`+prefix+`/etc/faithif/faithd.conf"`) {
		t.Errorf("installed faithif.conf does not name %s/etc/faithif/faithd.conf", prefix)
	}
}
