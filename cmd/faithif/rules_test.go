package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesTest(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FAITHIF_RUN_DIR", dir)
	conf := filepath.Join(dir, "faithd.conf")
	os.WriteFile(conf, []byte("# test\n2001:db8:1::/64 deny 198.51.100.3\n2001:db8:1::/64 permit 198.51.100.0/24:80-443\n"), 0o644)
	base := []string{"rules", "test", "--access", conf, "--prefix", "2001:db8:46::/96", "2001:db8:1::2"}
	// Exit status as grep's: 0 permit, 1 deny, 2 cannot decide.
	tests := []struct {
		dst, want string
		code      int
	}{
		{"[2001:db8:46::c633:6402]:80", "decision: permit (" + conf + ":3: 2001:db8:1::/64 permit 198.51.100.0/24:80-443)", exitOK},
		{"[2001:db8:46::c633:6402]:22", "decision: deny (no line of " + conf + " matches)", exitError},
		{"[2001:db8:46::c633:6403]:80", "decision: deny (" + conf + ":2: 2001:db8:1::/64 deny 198.51.100.3/32)", exitError},
		{"[2001:db8:46::7f00:1]:80", "decision: deny (always refused: map 2001:db8:46::7f00:1 to 127.0.0.1", exitError},
		{"[2001:db8:47::c633:6402]:80", "destination is not in a FAITH prefix", exitError},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, append(base, tt.dst)...)
		if code != tt.code || !strings.Contains(stdout, tt.want) || stderr != "" || strings.Contains(stdout, "prefixes:") {
			t.Errorf("rules test %s: exit %d, stdout %q, stderr %q; want exit %d, %q, nothing on stderr, no assumed prefix", tt.dst, code, stdout, stderr, tt.code, tt.want)
		}
	}
	code, stdout, _ := runCmd(t, "rules", "test", "2001:db8:1::2", "[64:ff9b::808:808]:53")
	if code != exitOK || !strings.Contains(stdout, "decision: permit (no access file)") || !strings.Contains(stdout, "8.8.8.8:53") ||
		!strings.Contains(stdout, "prefixes: 64:ff9b::/96 (the default; give --prefix, or an interface to use its own)\n") {
		t.Errorf("rules test without an access file or prefix: exit %d, %q; want 0, permit, and the assumed prefix", code, stdout)
	}
	// A file with no rule denies everything: no match denies.
	empty := filepath.Join(t.TempDir(), "empty.conf")
	os.WriteFile(empty, []byte("# nothing permitted\n"), 0o644)
	code, stdout, _ = runCmd(t, "rules", "test", "--access", empty, "2001:db8:1::2", "[64:ff9b::808:808]:53")
	if want := "decision: deny (" + empty + " has no rules: every flow is denied)"; code != exitError || !strings.Contains(stdout, want) || !strings.Contains(stdout, "prefixes: 64:ff9b::/96 (the default; give --prefix)") {
		t.Errorf("rules test with a file of comments: exit %d, %q; want %q", code, stdout, want)
	}

	bad := [][]string{
		{"rules"},
		{"rules", "frob"},
		{"rules", "test", "2001:db8:1::2"},
		{"rules", "test", "192.0.2.1", "[64:ff9b::1]:80"},
		{"rules", "test", "2001:db8:1::2", "64:ff9b::1"},
		{"rules", "test", "2001:db8:1::2", "192.0.2.1:80"},
	}
	for _, args := range bad {
		if code, _, stderr := runCmd(t, args...); code != exitUsage {
			t.Errorf("faithif %s: exit %d (%s); want 2", strings.Join(args, " "), code, stderr)
		}
	}
	os.WriteFile(conf, []byte("2001:db8:1::/64 allow 0.0.0.0/0\n"), 0o644)
	if code, _, stderr := runCmd(t, append(base, "[2001:db8:46::c633:6402]:80")...); code != exitUsage || !strings.Contains(stderr, conf+":1: unknown action") {
		t.Errorf("rules test with a bad file: exit %d, %q; want 2 (cannot decide) and FILE:1:", code, stderr)
	}
	if code, _, stderr := runCmd(t, "rules", "test", "faith7", "2001:db8:1::2", "[64:ff9b::1]:80"); code != exitUsage || !strings.Contains(stderr, "not running") {
		t.Errorf("rules test faith7 (not running): exit %d, %q; want 2 (cannot decide)", code, stderr)
	}
}
