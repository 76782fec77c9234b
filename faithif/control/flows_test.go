package control

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/relay"
)

// manyFlows returns n flows with addresses of the longest form, every
// counter at its widest.
func manyFlows(n int) []relay.FlowInfo {
	out := make([]relay.FlowInfo, n)
	for i := range out {
		client := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, byte(i >> 8), byte(i)})
		out[i] = relay.FlowInfo{
			Client: netip.AddrPortFrom(client, 65535-uint16(i%1000)),
			Dst6:   netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
			Src4:   netip.MustParseAddrPort("198.51.100.255:65535"),
			Dst4:   netip.MustParseAddrPort("203.0.113.255:65535"),
			State:  relay.FlowHalfClosedByClient,
			Age:    123456789 * time.Millisecond, Idle: 98765432 * time.Microsecond,
			BytesClientToServer: 1<<64 - 1, BytesServerToClient: 1<<64 - 1,
		}
	}
	return out
}

func serveFake(t *testing.T, path string, fc *fakeController) {
	t.Helper()
	srv, err := Listen(path, fc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
}

// TestFlowsLarge: 15,000 flows of the longest form fit in one answer (the
// server's 5 s and the client's cap) and arrive whole and sorted; the
// answer is well above the cap of the other answers.
func TestFlowsLarge(t *testing.T) {
	const n = 15000
	dir := faithif.RunDir(t.TempDir())
	fc := &fakeController{flows: manyFlows(n)}
	serveFake(t, dir.SocketPath("faith0"), fc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tb, err := Client{Path: dir.SocketPath("faith0")}.Flows(ctx, flows.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Flows) != n || tb.SchemaVersion != flows.SchemaVersion {
		t.Fatalf("%d flows, schema %d; want %d, %d", len(tb.Flows), tb.SchemaVersion, n, flows.SchemaVersion)
	}
	want := flows.Build("faith0", fc.flows, flows.Filter{})
	for i := range want.Flows {
		if tb.Flows[i] != want.Flows[i] {
			t.Fatalf("flow %d: %+v; want %+v", i, tb.Flows[i], want.Flows[i])
		}
	}
	b, _ := json.Marshal(response{Flows: tb})
	t.Logf("%d flows: %d bytes (%.0f per flow; cap %d)", n, len(b), float64(len(b))/n, maxFlowsAnswer)
	if len(b) <= maxAnswer || len(b) > maxFlowsAnswer/16 {
		t.Errorf("the answer is %d bytes; the test wants it above the %d of other answers and far below the %d cap", len(b), maxAnswer, maxFlowsAnswer)
	}
}

// TestFlowsFilterOnTheWire: the filter reaches the instance as parsed; a
// bad one sent by hand is answered with an error naming it.
func TestFlowsFilterOnTheWire(t *testing.T) {
	dir := faithif.RunDir(t.TempDir())
	fc := &fakeController{flows: manyFlows(3)}
	serveFake(t, dir.SocketPath("faith0"), fc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var f flows.Filter
	f.Client, _ = flows.ParseClient("[2001:db8:ffff:ffff:ffff:ffff::/96]:65534-65535")
	f.Dest, _ = flows.ParseDest("203.0.113.0/24")
	c := Client{Path: dir.SocketPath("faith0")}
	tb, err := c.Flows(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := fc.filter.Load(); got == nil || *got != f {
		t.Fatalf("the instance got filter %+v; want %+v", got, f)
	}
	if len(tb.Flows) != 2 {
		t.Fatalf("%d flows through the filter; want 2 (ports 65535 and 65534)", len(tb.Flows))
	}
	for _, bad := range []struct {
		req  request
		want string
	}{
		{request{Op: "flows", Client: "192.0.2.1"}, "client filter 192.0.2.1: clients are IPv6"},
		{request{Op: "flows", Dest: "2001:db8::1/64"}, "destination filter 2001:db8::1/64: host bits are set"},
	} {
		_, err := c.exchange(ctx, bad.req, maxAnswer)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v; want %q", bad.req, err, bad.want)
		}
	}
}

// TestAllFlows: the flows of every instance in one table, sorted by
// interface first; an instance that is not running is skipped.
func TestAllFlows(t *testing.T) {
	dir := faithif.RunDir(t.TempDir())
	serveFake(t, dir.SocketPath("faith1"), &fakeController{name: "faith1", flows: manyFlows(2)})
	serveFake(t, dir.SocketPath("faith0"), &fakeController{name: "faith0", flows: manyFlows(3)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tb, err := AllFlows(ctx, dir, flows.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range tb.Flows {
		names = append(names, f.Interface)
	}
	if strings.Join(names, " ") != "faith0 faith0 faith0 faith1 faith1" {
		t.Fatalf("interfaces %v", names)
	}
	empty, err := AllFlows(ctx, faithif.RunDir(t.TempDir()+"/none"), flows.Filter{})
	if err != nil || empty.Flows == nil || len(empty.Flows) != 0 || empty.SchemaVersion != flows.SchemaVersion {
		t.Fatalf("no run directory: %+v, %v; want an empty table", empty, err)
	}
}
