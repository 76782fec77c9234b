package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// dockerfile is what the image's final stage says about how it runs.
type dockerfile struct {
	// Entrypoint and Cmd are the exec-form (JSON) arrays; a shell-form
	// instruction is an error of the parse.
	Entrypoint, Cmd []string
	Env             map[string]string
	StopSignal      string
	// Copies are the final stage's COPY instructions, each as its words
	// (flags such as --from=build included).
	Copies [][]string
	// HealthCheck is HEALTHCHECK's CMD, in exec form.
	HealthCheck []string
}

// Argv is the container's command line: ENTRYPOINT then CMD.
func (d dockerfile) Argv() []string { return append(slices.Clone(d.Entrypoint), d.Cmd...) }

// parseDockerfile reads the Dockerfile at the module root: logical lines
// (continuations joined, comments and blank lines dropped), and from the
// last FROM on, ENTRYPOINT, CMD, ENV, STOPSIGNAL and COPY.
func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	root, err := netlab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	cur := ""
	for _, l := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != "" && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		lines = append(lines, cur+trimmed)
		cur = ""
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	var d dockerfile
	execForm := func(instr, rest string) []string {
		t.Helper()
		var argv []string
		if !strings.HasPrefix(rest, "[") || json.Unmarshal([]byte(rest), &argv) != nil {
			t.Fatalf("Dockerfile: %s %s: not the exec (JSON array) form; in shell form /bin/sh -c is PID 1 and SIGTERM never reaches faithif", instr, rest)
		}
		return argv
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d = dockerfile{Env: map[string]string{}}
		case "ENTRYPOINT":
			d.Entrypoint = execForm(instr, rest)
			d.Cmd = nil // as docker does: a new ENTRYPOINT resets CMD
		case "CMD":
			d.Cmd = execForm(instr, rest)
		case "ENV":
			if first, _, _ := strings.Cut(rest, " "); strings.Contains(first, "=") {
				// ENV KEY=VALUE [KEY=VALUE...] (values without spaces)
				for _, kv := range strings.Fields(rest) {
					k, v, _ := strings.Cut(kv, "=")
					d.Env[k] = strings.Trim(v, `"`)
				}
			} else {
				k, v, _ := strings.Cut(rest, " ")
				d.Env[k] = strings.TrimSpace(v)
			}
		case "STOPSIGNAL":
			d.StopSignal = rest
		case "COPY", "ADD":
			d.Copies = append(d.Copies, strings.Fields(rest))
		case "HEALTHCHECK":
			// HEALTHCHECK [--option=value...] CMD ["exec", "form"]
			_, cmd, ok := strings.Cut(rest, "CMD ")
			if !ok {
				t.Fatalf("Dockerfile: HEALTHCHECK %s: no CMD", rest)
			}
			d.HealthCheck = execForm(instr, strings.TrimSpace(cmd))
		}
	}
	return d
}

// containerCommand is the command line the image runs.
var containerCommand = []string{"/usr/local/bin/faithif", "run", "--config", "/etc/faithif/faithif.conf"}

// TestDockerfileCommand checks what the image runs: ENTRYPOINT and CMD in
// exec form, together exactly "/usr/local/bin/faithif run --config
// /etc/faithif/faithif.conf"; SIGTERM as the stop signal; the binary copied
// to /usr/local/bin/faithif and a faithif.conf, from the tree, to
// /etc/faithif/.
func TestDockerfileCommand(t *testing.T) {
	d := parseDockerfile(t)
	if got := d.Argv(); !slices.Equal(got, containerCommand) {
		t.Errorf("ENTRYPOINT %q + CMD %q = %q, want %q", d.Entrypoint, d.Cmd, got, containerCommand)
	}
	if len(d.Entrypoint) != 1 {
		t.Errorf("ENTRYPOINT %q: want the binary alone, so that `docker run IMAGE show` runs faithif show", d.Entrypoint)
	}
	if d.StopSignal != "" && d.StopSignal != "SIGTERM" && d.StopSignal != "15" {
		t.Errorf("STOPSIGNAL %s: faithif drains on SIGTERM", d.StopSignal)
	}
	if rd, ok := d.Env["FAITHIF_RUN_DIR"]; ok && !filepath.IsAbs(rd) {
		t.Errorf("ENV FAITHIF_RUN_DIR=%q is not an absolute path", rd)
	}
	root, err := netlab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	binary, conf := false, false
	for _, c := range d.Copies {
		if len(c) < 2 {
			continue
		}
		dst := c[len(c)-1]
		var srcs []string
		from := false
		for _, w := range c[:len(c)-1] {
			if strings.HasPrefix(w, "--from=") {
				from = true
			} else if !strings.HasPrefix(w, "--") {
				srcs = append(srcs, w)
			}
		}
		if from && (dst == "/usr/local/bin/faithif" || dst == "/usr/local/bin/") {
			binary = true
		}
		if !from && (dst == "/etc/faithif/" || dst == "/etc/faithif") {
			for _, s := range srcs {
				if _, err := os.Stat(filepath.Join(root, s)); err != nil {
					t.Errorf("COPY %s: %v", strings.Join(c, " "), err)
				}
				if filepath.Base(s) == "faithif.conf" {
					conf = true
				}
			}
		}
	}
	if !binary {
		t.Errorf("no COPY --from=... of the binary to /usr/local/bin/faithif: %q", d.Copies)
	}
	if !conf {
		t.Errorf("no COPY of a faithif.conf to /etc/faithif/, which the command reads: %q", d.Copies)
	}
}

// imageFiles returns the files the Dockerfile copies from the tree into
// /etc/faithif/, by base name.
func imageFiles(t *testing.T, d dockerfile) map[string][]byte {
	t.Helper()
	root, err := netlab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, c := range d.Copies {
		if len(c) < 2 || strings.TrimSuffix(c[len(c)-1], "/") != "/etc/faithif" {
			continue
		}
		for _, s := range c[:len(c)-1] {
			if strings.HasPrefix(s, "--") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, s))
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Base(s)] = b
		}
	}
	return files
}

// containerScript prepares, in a private mount namespace, what a container
// of the image sees, then execs its arguments: /etc/faithif holds only the
// given files and /usr/local/bin/faithif is the binary under test (overlays
// on a tmpfs: nothing is written to the host's /etc or /usr/local/bin), /run
// is an empty tmpfs, and /proc/sys is read-only as docker mounts it. $1 is
// the directory holding etc/ and bin/ to lay over.
const containerScript = `set -e
src=$1; shift
mount -t tmpfs -o mode=0755 faithif-ctr "$src/stage"
for d in etc bin; do mkdir -p "$src/stage/$d/upper" "$src/stage/$d/work"; cp -a "$src/$d/." "$src/stage/$d/upper/"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$src/stage/etc/upper,workdir=$src/stage/etc/work" /etc
mount -t overlay overlay -o "lowerdir=/usr/local/bin,upperdir=$src/stage/bin/upper,workdir=$src/stage/bin/work" /usr/local/bin
mount -t tmpfs -o mode=0755 faithif-run /run
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
exec "$@"
`

// containerPath is the PATH of a debian image.
const containerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerArgv returns the command that runs argv in the router "as the
// image would": a private mount namespace prepared by containerScript with
// files in /etc/faithif, only CAP_NET_ADMIN left (docker run --cap-drop ALL
// --cap-add NET_ADMIN), and an environment of PATH, HOME and the image's
// ENV only.
func containerArgv(t *testing.T, d dockerfile, files map[string][]byte, argv []string) []string {
	t.Helper()
	src := netlab.TempDir(t, "ctr")
	for _, dir := range []string{"etc/faithif", "bin", "stage"} {
		if err := os.MkdirAll(filepath.Join(src, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		writeFile(t, filepath.Join(src, "etc/faithif", name), string(b))
	}
	bin, err := os.ReadFile(netlab.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin/faithif"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"PATH=" + containerPath, "HOME=/root"}, coverEnv()...)
	for k, v := range d.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	cmd := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", containerScript, "sh", src,
		"setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "env", "-i"}
	cmd = append(cmd, env...)
	return append(cmd, argv...)
}

// coverEnv passes GOCOVERDIR on to a faithif run with a clean environment:
// a binary built with -cover (make e2e-cover) warns on stderr without it.
// (The container's mounts leave the host's path visible.)
func coverEnv() []string {
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		return []string{"GOCOVERDIR=" + d}
	}
	return nil
}

// dockerExec runs argv in the mount and network namespaces of process pid,
// with the image's environment, as "docker exec" would.
func dockerExec(t *testing.T, d dockerfile, pid int, argv ...string) netlab.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-t", fmt.Sprint(pid), "-m", "-n", "env", "-i", "PATH=" + containerPath}, coverEnv()...)
	for k, v := range d.Env {
		args = append(args, k+"="+v)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	return netlab.RunCommand(cmd)
}

// hostPaths records what the host has at the paths a container run must
// not touch.
func hostPaths(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range []string{"/etc/faithif", "/usr/local/bin/faithif", "/run/faithif"} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			m[p] = "absent"
		case err != nil:
			t.Fatal(err)
		case fi.IsDir():
			ents, _ := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			m[p] = "dir " + strings.Join(names, " ")
		default:
			m[p] = fmt.Sprintf("file %d bytes %v", fi.Size(), fi.ModTime())
		}
	}
	return m
}

// procField returns the value of a "Name:\tvalue" line of
// /proc/PID/status.
func procField(pid int, name string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestContainerEntrypoint runs the image's command line, exactly as the
// Dockerfile gives it, in a fresh lab's router as a container with host
// networking would run it: private mounts with /etc/faithif/faithif.conf
// and its access file only inside, /usr/local/bin/faithif the binary
// under test, an empty /run, a read-only /proc/sys, only CAP_NET_ADMIN,
// the image's environment. It checks that flows are relayed through it,
// that "faithif show" works through "docker exec", that SIGTERM ends it
// with status 0 and leaves the router as found, and that the host's /etc,
// /usr/local/bin and /run are untouched. Also: the configuration the image
// ships starts as it is; a [sysctl] the container cannot write fails
// cleanly.
func TestContainerEntrypoint(t *testing.T) {
	d := parseDockerfile(t)
	argv := d.Argv()
	if len(argv) == 0 {
		t.Fatal("the Dockerfile has no ENTRYPOINT/CMD")
	}
	confPath := argv[len(argv)-1]
	if !slices.Contains(argv, "--config") || !strings.HasPrefix(confPath, "/etc/faithif/") {
		t.Fatalf("the image's command %q does not read a configuration in /etc/faithif/", argv)
	}
	host := hostPaths(t)
	t.Cleanup(func() {
		if now := hostPaths(t); fmt.Sprint(now) != fmt.Sprint(host) {
			t.Errorf("the host's files changed: before %v, after %v", host, now)
		}
	})

	t.Run("LabConfig", func(t *testing.T) {
		lab := netlab.New(t)
		ctx := testCtx(t, time.Minute)
		port := echoServer(t, lab)
		files := map[string][]byte{
			filepath.Base(confPath): []byte(`# the lab's appliance
keepfaith = true
metrics = "` + metricsAddr + `"
log_format = "json"
[sysctl]
# set on the host already: a no-op, so /proc/sys being read-only is fine
"net.ipv6.conf.all.forwarding" = 1
[[interface]]
name = "faith0"
prefixes = ["` + netlab.FaithPrefix + `"]
access_file = "/etc/faithif/faithd.conf"
grace = "1s"
  [[interface.route]]
  prefix = "` + netlab.FaithPrefix + `"
`),
			"faithd.conf": []byte("2001:db8:1::/64 permit 192.0.2.0/24\n"),
		}
		before := snapshot(t, lab.Router, lab.RunDir)
		f := lab.Start(t, netlab.StartSpec{Argv: containerArgv(t, d, files, argv), Ready: netlab.IsApplianceReady})
		pid := f.Pid()

		// It is the image's command, as the image would run it.
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if got := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"); !slices.Equal(got, argv) {
			t.Errorf("the process runs %q, want %q", got, argv)
		}
		if capEff := procField(pid, "CapEff"); capEff != "0000000000001000" {
			t.Errorf("CapEff %s, want only CAP_NET_ADMIN (0000000000001000)", capEff)
		}
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		for k, v := range d.Env {
			if !bytes.Contains(environ, []byte(k+"="+v+"\x00")) {
				t.Errorf("%s=%s not in the process's environment", k, v)
			}
		}
		if _, ok := findLine(f.Stderr(), `"level":"INFO"`, `"msg":"appliance ready"`); !ok {
			t.Errorf("no JSON appliance ready line:\n%s", f.Stderr())
		}

		echoFlows(t, ctx, lab, serverAddr(port), 3, 100<<10, 300)

		// docker exec CONTAINER faithif show faith0 --json
		r := dockerExec(t, d, pid, "faithif", "show", "faith0", "--json")
		var st netlab.Status
		if r.ExitCode != 0 {
			t.Errorf("docker exec faithif show: %s", r)
		} else if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			t.Errorf("show --json: %v: %s", err, r.Stdout)
		} else if st.PID != pid || st.FlowsAccepted != 3 || st.Rules != "/etc/faithif/faithd.conf" || !st.KeepFaith {
			t.Errorf("show inside the container: %s; want pid %d, 3 flows accepted, rules /etc/faithif/faithd.conf, keepfaith", r.Stdout, pid)
		}
		if code, body, err := lab.Router.HTTPGet(ctx, "http://"+metricsAddr+"/readyz"); err != nil || code != 200 {
			t.Errorf("/readyz: %d %q %v", code, body, err)
		}
		// The image's HEALTHCHECK, as docker runs it: ready, then not
		// ready with keepfaith 0 (and why), then ready again.
		if len(d.HealthCheck) == 0 || d.HealthCheck[0] != "/usr/local/bin/faithif" {
			t.Errorf("the Dockerfile's HEALTHCHECK %q does not run faithif itself (no shell in the way)", d.HealthCheck)
		} else {
			if r := dockerExec(t, d, pid, d.HealthCheck...); r.ExitCode != 0 || r.Stdout != "faith0: ready\n" {
				t.Errorf("HEALTHCHECK while relaying: %s; want exit 0, faith0: ready", r)
			}
			if r := dockerExec(t, d, pid, "faithif", "sysctl", "net.inet6.ip6.keepfaith=0"); r.ExitCode != 0 {
				t.Fatalf("sysctl keepfaith=0: %s", r)
			}
			if r := dockerExec(t, d, pid, d.HealthCheck...); r.ExitCode != 1 || !strings.Contains(r.Stderr, "not ready: faith0: keepfaith is 0") {
				t.Errorf("HEALTHCHECK with keepfaith 0: %s; want exit 1 saying keepfaith is 0", r)
			}
			if r := dockerExec(t, d, pid, "faithif", "sysctl", "net.inet6.ip6.keepfaith=1"); r.ExitCode != 0 {
				t.Fatalf("sysctl keepfaith=1: %s", r)
			}
			if r := dockerExec(t, d, pid, d.HealthCheck...); r.ExitCode != 0 {
				t.Errorf("HEALTHCHECK with keepfaith 1 again: %s; want exit 0", r)
			}
		}
		if _, err := os.Stat("/etc/faithif/faithif.conf"); err == nil && host["/etc/faithif"] == "absent" {
			t.Errorf("/etc/faithif/faithif.conf is visible on the host")
		}

		stopRun(t, f, 5*time.Second)
		if _, ok := findLine(f.Stderr(), `"msg":"stopped"`, `"interface":"faith0"`); !ok {
			t.Errorf("no JSON stopped line:\n%s", f.Stderr())
		}
		sameState(t, "after the container stopped", before, snapshot(t, lab.Router, lab.RunDir))
	})

	t.Run("ShippedConfig", func(t *testing.T) {
		// The image's own /etc/faithif, as the Dockerfile copies it,
		// starts and stops cleanly (the host has IPv6 forwarding on).
		lab := netlab.New(t)
		files := imageFiles(t, d)
		if _, ok := files[filepath.Base(confPath)]; !ok {
			t.Fatalf("the image has no %s: %v", confPath, d.Copies)
		}
		before := snapshot(t, lab.Router, lab.RunDir)
		f := lab.Start(t, netlab.StartSpec{Argv: containerArgv(t, d, files, argv), Ready: netlab.IsApplianceReady})
		r := dockerExec(t, d, f.Pid(), append(slices.Clone(argv), "--check")...)
		if r.ExitCode != 0 {
			t.Errorf("docker exec %s --check: %s", strings.Join(argv, " "), r)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if addr, ok := strings.CutPrefix(strings.TrimSpace(l), "metrics on "); ok {
				ctx := testCtx(t, 10*time.Second)
				if code, body, err := lab.Router.HTTPGet(ctx, "http://"+addr+"/readyz"); err != nil || code != 200 {
					t.Errorf("/readyz on %s: %d %q %v", addr, code, body, err)
				}
			}
		}
		stopRun(t, f, 15*time.Second)
		sameState(t, "after the container stopped", before, snapshot(t, lab.Router, lab.RunDir))
	})

	t.Run("SysctlReadOnly", func(t *testing.T) {
		// With forwarding off on the host, the container's [sysctl] must
		// write, and /proc/sys is read-only: exit 1 naming the line,
		// nothing left.
		lab := netlab.New(t)
		if err := lab.Router.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
			t.Fatal(err)
		}
		conf := `keepfaith = true
[sysctl]
"net.ipv6.conf.all.forwarding" = 1
[[interface]]
name = "faith0"
prefixes = ["` + netlab.FaithPrefix + `"]
`
		files := map[string][]byte{filepath.Base(confPath): []byte(conf)}
		before := snapshot(t, lab.Router, lab.RunDir)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		full := containerArgv(t, d, files, argv)
		r := netlab.RunCommand(lab.Router.Command(ctx, nil, full[0], full[1:]...))
		t.Logf("exit %d, stderr: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
		if r.ExitCode != 1 {
			t.Errorf("%s; want exit 1", r)
		}
		want := fmt.Sprintf("%s:%d: ", confPath, lineOf(t, conf, "all.forwarding"))
		if !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, "net.ipv6.conf.all.forwarding") || !strings.Contains(r.Stderr, "read-only") {
			t.Errorf("stderr does not name %q, the key and read-only:\n%s", want, r.Stderr)
		}
		sameState(t, "after the failed container", before, snapshot(t, lab.Router, lab.RunDir))
	})
}
