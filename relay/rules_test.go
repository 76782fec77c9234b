package relay

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRulesFaithdExample(t *testing.T) {
	// The example from faithd(8), plus a BIND4 and comments.
	conf := `# faithd.conf
3ffe:501:ffff::/48 deny   127.0.0.0/8
3ffe:501:ffff::/48 deny   10.0.0.0/8   # private
3ffe:501:ffff::/48 permit 0.0.0.0/0

2001:db8:1::2 permit 192.0.2.2 192.0.2.1
`
	local := func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.1") }
	rs, err := ParseRules("faithd.conf", strings.NewReader(conf), local)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 4 || rs.Rules[3].Line != 6 || rs.Rules[3].Bind != netip.MustParseAddr("192.0.2.1") ||
		rs.Rules[3].Src != netip.MustParsePrefix("2001:db8:1::2/128") || rs.Rules[3].Dst != netip.MustParsePrefix("192.0.2.2/32") {
		t.Fatalf("parsed %+v", rs.Rules)
	}
	tests := []struct {
		src, dst string
		permit   bool
		line     int
	}{
		{"3ffe:501:ffff::1", "127.0.0.1", false, 2},
		{"3ffe:501:ffff::1", "10.1.2.3", false, 3},
		{"3ffe:501:ffff::1", "192.0.2.2", true, 4},
		{"2001:db8:1::2", "192.0.2.2", true, 6},
		{"2001:db8:1::2", "192.0.2.3", false, 0}, // no match denies
		{"2001:db8:1::3", "192.0.2.2", false, 0},
	}
	for _, tt := range tests {
		d := rs.Check(netip.MustParseAddr(tt.src), netip.AddrPortFrom(netip.MustParseAddr(tt.dst), 80))
		line := 0
		if d.Rule != nil {
			line = d.Rule.Line
		}
		if d.Permit != tt.permit || line != tt.line {
			t.Errorf("Check(%s, %s) = permit %v line %d; want %v line %d", tt.src, tt.dst, d.Permit, line, tt.permit, tt.line)
		}
	}
}

func TestRulesPorts(t *testing.T) {
	conf := "::/0 permit 192.0.2.2:80\n::/0 permit 192.0.2.0/24:8000-8080\n::/0 deny 0.0.0.0/0\n"
	rs, err := ParseRules("ports.conf", strings.NewReader(conf), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Rules[1].String(); got != "::/0 permit 192.0.2.0/24:8000-8080" {
		t.Errorf("String() = %q", got)
	}
	tests := []struct {
		dst    string
		permit bool
		line   int
	}{
		{"192.0.2.2:80", true, 1},
		{"192.0.2.2:81", false, 3},
		{"192.0.2.9:8000", true, 2},
		{"192.0.2.9:8080", true, 2},
		{"192.0.2.9:8081", false, 3},
		{"192.0.2.9:7999", false, 3},
	}
	for _, tt := range tests {
		d := rs.Check(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddrPort(tt.dst))
		if d.Permit != tt.permit || d.Rule == nil || d.Rule.Line != tt.line {
			t.Errorf("Check(%s) = %+v; want permit %v by line %d", tt.dst, d, tt.permit, tt.line)
		}
	}
}

// TestNoRules: no access file permits everything, but a file with no
// rule (empty, or comments only) denies everything: no match denies.
func TestNoRules(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddrPort("192.0.2.2:80")
	var none *Rules
	if d := none.Check(src, dst); !d.Permit || d.Rule != nil {
		t.Errorf("Check with no access file = %+v; want permit", d)
	}
	for _, conf := range []string{"", "# nothing\n\n   # at all\n"} {
		empty, err := ParseRules("empty", strings.NewReader(conf), nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := empty.Check(src, dst); d.Permit || d.Rule != nil {
			t.Errorf("Check with a file of %q = %+v; want deny, no rule", conf, d)
		}
		if w := empty.Warning(); w != "access file has no rules: every flow is denied" {
			t.Errorf("Warning of a file of %q = %q", conf, w)
		}
	}
	if w := none.Warning(); !strings.HasPrefix(w, "no access rules: every destination is permitted") {
		t.Errorf("Warning with no access file = %q", w)
	}
}

func TestPermitsAll(t *testing.T) {
	tests := []struct {
		conf string
		all  bool
		line int
	}{
		{"::/0 permit 0.0.0.0/0\n", true, 1},
		{"# open\n2001:db8::/32 permit 192.0.2.0/24\n::/0 permit 0.0.0.0/0\n2001:db8::/32 deny 0.0.0.0/0\n", true, 3},
		{"2001:db8::/32 deny 192.0.2.0/24\n::/0 permit 0.0.0.0/0\n", false, 0},
		{"::/0 permit 0.0.0.0/0:1-65535\n", false, 0}, // a port range, even a full one, is not recognised
		{"::/0 permit 0.0.0.0/1\n::/0 permit 128.0.0.0/1\n", false, 0},
		{"2001:db8::/32 permit 0.0.0.0/0\n", false, 0},
		{"", false, 0},
	}
	for _, tt := range tests {
		rs, err := ParseRules("f.conf", strings.NewReader(tt.conf), nil)
		if err != nil {
			t.Fatal(err)
		}
		all, rule := rs.PermitsAll()
		line := 0
		if rule != nil {
			line = rule.Line
		}
		if all != tt.all || line != tt.line {
			t.Errorf("PermitsAll(%q) = %v, line %d; want %v, line %d", tt.conf, all, line, tt.all, tt.line)
		}
		if w := rs.Warning(); tt.all && w != fmt.Sprintf("access rules permit every flow (f.conf:%d: ::/0 permit 0.0.0.0/0)", tt.line) {
			t.Errorf("Warning(%q) = %q", tt.conf, w)
		} else if !tt.all && tt.conf != "" && w != "" {
			t.Errorf("Warning(%q) = %q; want none", tt.conf, w)
		}
	}
	var none *Rules
	if all, rule := none.PermitsAll(); !all || rule != nil {
		t.Errorf("PermitsAll with no access file = %v, %v", all, rule)
	}
}

func TestParseRulesErrors(t *testing.T) {
	local := func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.1") }
	tests := []struct{ line, want string }{
		{"2001:db8::/32 permit", "want SRC6[/PLEN] permit|deny DST4[/PLEN][:PORT[-PORT]] [BIND4], got 2 fields"},
		{"2001:db8::/32 permit 192.0.2.0/24:0", `port "0": want a number from 1 to 65535`},
		{"2001:db8::/32 permit 192.0.2.0/24:65536", `port "65536"`},
		{"2001:db8::/32 permit 192.0.2.0/24:http", `port "http"`},
		{"2001:db8::/32 permit 192.0.2.0/24:90-80", "port range 90-80 is empty"},
		{"2001:db8::/32 permit 192.0.2.0/24:80-", `port ""`},
		{"2001:db8::/32 permit 0.0.0.0/0 192.0.2.1 extra", "got 5 fields"},
		{"2001:db8::/32 allow 0.0.0.0/0", `unknown action "allow" (want permit or deny)`},
		{"2001:db8::/32 PERMIT 0.0.0.0/0", `unknown action "PERMIT"`},
		{"192.0.2.0/24 permit 0.0.0.0/0", `source "192.0.2.0/24": not an IPv6 address or prefix`},
		{"::ffff:192.0.2.1 permit 0.0.0.0/0", "not an IPv6 address or prefix"},
		{"2001:db8::1/32 permit 0.0.0.0/0", "host bits are set (did you mean 2001:db8::/32?)"},
		{"2001:db8::/32 permit 10.0.0.1/8", `destination "10.0.0.1/8": host bits are set (did you mean 10.0.0.0/8?)`},
		{"2001:db8::/32 permit 2001:db8::/32", "not an IPv4 address or prefix"},
		{"2001:db8::/32 permit 300.0.0.0/8", "not an address or prefix"},
		{"2001:db8::/129 permit 0.0.0.0/0", "not an address or prefix"},
		{"fe80::%eth0 permit 0.0.0.0/0", "zones are not allowed"},
		{"2001:db8::/32 permit 0.0.0.0/0 2001:db8::1", `bind address "2001:db8::1": not an IPv4 address`},
		{"2001:db8::/32 permit 0.0.0.0/0 198.51.100.7", "bind address 198.51.100.7: not an address of this router"},
		{"2001:db8::/32 deny 0.0.0.0/0 192.0.2.1", "bind address \"192.0.2.1\" on a deny rule"},
	}
	for _, tt := range tests {
		conf := "# first line\n" + tt.line + "\n"
		_, err := ParseRules("f.conf", strings.NewReader(conf), local)
		if err == nil || !strings.Contains(err.Error(), "f.conf:2: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRules(%q) = %v; want f.conf:2: ...%s", tt.line, err, tt.want)
		}
	}
	// Every bad line is reported, and the file is rejected whole.
	rs, err := ParseRules("f.conf", strings.NewReader("::/0 permit 0.0.0.0/0\nbad\n::/0 maybe 0.0.0.0/0\n"), nil)
	if rs != nil || err == nil || !strings.Contains(err.Error(), "f.conf:2:") || !strings.Contains(err.Error(), "f.conf:3:") {
		t.Fatalf("ParseRules with two bad lines = %v, %v; want both reported and no rules", rs, err)
	}
}

func TestLoadRulesMissingFile(t *testing.T) {
	if _, err := LoadRules("/nonexistent/faithd.conf", nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/faithd.conf") {
		t.Fatalf("LoadRules(missing) = %v; want an error naming the file", err)
	}
}
