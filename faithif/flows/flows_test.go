package flows

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/relay"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// snapshot is a relay's flows in no order.
var snapshot = []relay.FlowInfo{
	{Client: ap("[2001:db8:1::10]:5000"), Dst6: ap("[2001:db8:46::c000:202]:80"), Src4: ap("192.0.2.1:40001"), Dst4: ap("192.0.2.2:80"),
		State: relay.FlowEstablished, Age: 90 * time.Second, Idle: 2 * time.Second, BytesClientToServer: 11, BytesServerToClient: 22},
	{Client: ap("[2001:db8:1::2]:40000"), Dst6: ap("[2001:db8:46::c000:202]:443"), Dst4: ap("192.0.2.2:443"),
		State: relay.FlowHandshake, Age: 1500 * time.Millisecond, Idle: 1500 * time.Millisecond},
	{Client: ap("[2001:db8:1::2]:39999"), Dst6: ap("[2001:db8:46::cb00:7101]:80"), Src4: ap("192.0.2.1:40002"), Dst4: ap("203.0.113.1:80"),
		State: relay.FlowHalfClosedByClient, Age: time.Hour + 2*time.Minute + 3*time.Second, Idle: 250 * time.Millisecond, BytesClientToServer: 1 << 40},
	{Client: ap("[2001:db8:2::1]:1234"), Dst6: ap("[2001:db8:46::c000:202]:80"), Src4: ap("192.0.2.1:40003"), Dst4: ap("192.0.2.2:80"),
		State: relay.FlowDraining, Age: 3 * time.Second},
	// The same client port to two destinations.
	{Client: ap("[2001:db8:1::2]:40000"), Dst6: ap("[2001:db8:46::c000:202]:80"), Src4: ap("192.0.2.1:40004"), Dst4: ap("192.0.2.2:80"),
		State: relay.FlowHalfClosedByServer, Age: time.Second},
}

func clients(t Table) []string {
	var s []string
	for _, f := range t.Flows {
		s = append(s, f.Client.String()+">"+f.Dst6.String())
	}
	return s
}

// TestBuildSorted: flows come out by client address, client port, then
// destination, with every field of the snapshot.
func TestBuildSorted(t *testing.T) {
	tb := Build("faith0", snapshot, Filter{})
	if tb.SchemaVersion != SchemaVersion {
		t.Fatalf("schema_version %d", tb.SchemaVersion)
	}
	want := []string{
		"[2001:db8:1::2]:39999>[2001:db8:46::cb00:7101]:80",
		"[2001:db8:1::2]:40000>[2001:db8:46::c000:202]:80",
		"[2001:db8:1::2]:40000>[2001:db8:46::c000:202]:443",
		"[2001:db8:1::10]:5000>[2001:db8:46::c000:202]:80",
		"[2001:db8:2::1]:1234>[2001:db8:46::c000:202]:80",
	}
	if got := clients(tb); !reflect.DeepEqual(got, want) {
		t.Fatalf("order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f := tb.Flows[0]
	wantFlow := Flow{Interface: "faith0", Client: ap("[2001:db8:1::2]:39999"), Dst6: ap("[2001:db8:46::cb00:7101]:80"),
		Src4: ap("192.0.2.1:40002"), Dst4: ap("203.0.113.1:80"), State: "half_closed_by_client", AgeSeconds: 3723,
		IdleSeconds: 0.25, BytesClientToServer: 1 << 40}
	if f != wantFlow {
		t.Fatalf("flow %+v\nwant %+v", f, wantFlow)
	}
	// The same listing twice, and across interfaces: the interface first.
	again := Build("faith0", append([]relay.FlowInfo(nil), snapshot[2], snapshot[0], snapshot[4], snapshot[3], snapshot[1]), Filter{})
	if !reflect.DeepEqual(again, tb) {
		t.Fatal("a snapshot in another order lists otherwise")
	}
	all := append(Build("faith1", snapshot[:1], Filter{}).Flows, tb.Flows...)
	Sort(all)
	if all[0].Interface != "faith0" || all[len(all)-1].Interface != "faith1" {
		t.Fatalf("across interfaces: first %s, last %s", all[0].Interface, all[len(all)-1].Interface)
	}
	if empty := Build("faith0", nil, Filter{}); empty.Flows == nil {
		t.Fatal("no flows: the list must be [] in JSON, not null")
	}
}

// TestJSON: the keys follow the metrics' names, src4 is "" during the
// handshake, and Decode reads it back strictly.
func TestJSON(t *testing.T) {
	tb := Build("faith0", snapshot[1:2], Filter{})
	b, err := json.Marshal(tb)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema_version":1,"flows":[{"interface":"faith0","client":"[2001:db8:1::2]:40000","dst6":"[2001:db8:46::c000:202]:443",` +
		`"src4":"","dst4":"192.0.2.2:443","state":"handshake","age_seconds":1.5,"idle_seconds":1.5,` +
		`"bytes_client_to_server":0,"bytes_server_to_client":0}]}`
	if string(b) != want {
		t.Fatalf("JSON\n%s\nwant\n%s", b, want)
	}
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(*back, tb) {
		t.Fatalf("Decode = %+v, %v; want %+v", back, err, tb)
	}
	for _, bad := range []string{
		`{"schema_version":2,"flows":[]}`,
		`{"schema_version":1,"flows":[{"bytes_in":1}]}`,
		`{"schema_version":1,"flows":[{"client":"nonsense"}]}`,
		`[]`,
	} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) accepted it", bad)
		}
	}
}

// TestWriteText: a heading and one line per flow, in aligned columns.
func TestWriteText(t *testing.T) {
	tb := Build("faith0", snapshot, Filter{})
	var b bytes.Buffer
	if err := tb.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 1+len(snapshot) {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "INTERFACE CLIENT DST6 SRC4 DST4 STATE AGE IDLE CLIENT->SERVER SERVER->CLIENT" {
		t.Fatalf("heading %q", lines[0])
	}
	want := [][]string{
		{"faith0", "[2001:db8:1::2]:39999", "[2001:db8:46::cb00:7101]:80", "192.0.2.1:40002", "203.0.113.1:80", "half_closed_by_client", "1h2m3s", "250ms", "1099511627776", "0"},
		{"faith0", "[2001:db8:1::2]:40000", "[2001:db8:46::c000:202]:80", "192.0.2.1:40004", "192.0.2.2:80", "half_closed_by_server", "1s", "0s", "0", "0"},
		{"faith0", "[2001:db8:1::2]:40000", "[2001:db8:46::c000:202]:443", "-", "192.0.2.2:443", "handshake", "2s", "2s", "0", "0"},
		{"faith0", "[2001:db8:1::10]:5000", "[2001:db8:46::c000:202]:80", "192.0.2.1:40001", "192.0.2.2:80", "established", "1m30s", "2s", "11", "22"},
		{"faith0", "[2001:db8:2::1]:1234", "[2001:db8:46::c000:202]:80", "192.0.2.1:40003", "192.0.2.2:80", "draining", "3s", "0s", "0", "0"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[i+1]); !reflect.DeepEqual(got, w) {
			t.Errorf("line %d: %q\nwant %q", i+1, got, w)
		}
	}
	// Aligned: every column starts at the same offset on every line.
	starts := func(l string) []int {
		var s []int
		for i := range l {
			if l[i] != ' ' && (i == 0 || l[i-1] == ' ') {
				s = append(s, i)
			}
		}
		return s
	}
	for _, l := range lines[1:] {
		if !reflect.DeepEqual(starts(l), starts(lines[0])) {
			t.Errorf("columns not aligned:\n%s\n%s", lines[0], l)
		}
	}
}

func TestDuration(t *testing.T) {
	for s, want := range map[float64]string{0: "0s", 0.0004: "0s", 0.35: "350ms", 1.4: "1s", 59.6: "1m0s", 3723.2: "1h2m3s"} {
		if got := Duration(s); got != want {
			t.Errorf("Duration(%v) = %q; want %q", s, got, want)
		}
	}
}
