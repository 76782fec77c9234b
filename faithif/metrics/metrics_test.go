package metrics

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/faithif/faithif/faithif/buildinfo"
	"github.com/faithif/faithif/faithif/status"
)

type fakeSource struct {
	st    []status.Status
	ready error
}

func (f *fakeSource) Statuses() []status.Status { return f.st }
func (f *fakeSource) Ready() error              { return f.ready }

func scrape(t *testing.T, h http.Handler) map[string]*dto {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto{}
	for name, f := range fams {
		out[name] = &dto{f}
	}
	return out
}

func TestCollect(t *testing.T) {
	st := status.Status{Name: "faith0", KeepFaith: true, RuleCount: 4}
	st.FlowsOpen, st.BytesIn, st.BytesOut, st.PacketsIn, st.PacketsOut = 2, 100, 200, 7, 9
	st.FlowOutcomes = map[string]uint64{"accepted": 5, "denied": 3}
	st.FlowEnds = map[string]uint64{"closed": 3}
	st.PacketsDiscarded = map[string]uint64{"keepfaith": 4}
	st.ICMPv6In = map[string]uint64{"packet_too_big": 1}
	st.ICMPv6Out = map[string]uint64{"dst_unreachable": 3, "packet_too_big": 0}
	st.FDLimit = 20000
	src := &fakeSource{st: []status.Status{st, {Name: "faith1"}}}
	m := New(src)
	obs := m.ObserveDial("faith0")
	obs(2*time.Millisecond, true)
	obs(3*time.Second, false)
	up := m.ObserveUpstream("faith0")
	up("192.0.2.53:53", time.Millisecond, "noerror")
	up("192.0.2.54:53", 2*time.Second, "timeout")
	up("192.0.2.55:53", time.Millisecond, "servfail")
	fams := scrape(t, m.Handler())
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"faithif_keepfaith", map[string]string{"interface": "faith0"}, 1},
		{"faithif_keepfaith", map[string]string{"interface": "faith1"}, 0},
		{"faithif_flows_open", map[string]string{"interface": "faith0"}, 2},
		{"faithif_flows_total", map[string]string{"interface": "faith0", "outcome": "accepted"}, 5},
		{"faithif_flows_total", map[string]string{"interface": "faith0", "outcome": "denied"}, 3},
		{"faithif_flows_ended_total", map[string]string{"interface": "faith0", "end": "closed"}, 3},
		{"faithif_bytes_total", map[string]string{"interface": "faith0", "direction": "client_to_server"}, 100},
		{"faithif_bytes_total", map[string]string{"interface": "faith0", "direction": "server_to_client"}, 200},
		{"faithif_packets_total", map[string]string{"interface": "faith0", "direction": "out"}, 9},
		{"faithif_packets_discarded_total", map[string]string{"interface": "faith0", "reason": "keepfaith"}, 4},
		{"faithif_icmp6_received_total", map[string]string{"interface": "faith0", "type": "packet_too_big"}, 1},
		{"faithif_icmp6_sent_total", map[string]string{"interface": "faith0", "type": "dst_unreachable"}, 3},
		{"faithif_icmp6_sent_total", map[string]string{"interface": "faith0", "type": "packet_too_big"}, 0},
		{"faithif_fd_limit", map[string]string{"interface": "faith0"}, 20000},
		{"faithif_rules", map[string]string{"interface": "faith0"}, 4},
	} {
		f := fams[tc.name]
		if f == nil {
			t.Errorf("%s missing", tc.name)
			continue
		}
		if v, ok := f.value(tc.labels); !ok || v != tc.want {
			t.Errorf("%s%v = %v (found %v); want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	h := fams["faithif_dial_duration_seconds"]
	if h == nil {
		t.Fatal("dial histogram missing")
	}
	for _, res := range []string{"ok", "failed"} {
		if n, ok := h.histCount(map[string]string{"interface": "faith0", "result": res}); !ok || n != 1 {
			t.Errorf("dial histogram %s: count %d (found %v); want 1", res, n, ok)
		}
	}
	h = fams["faithif_dns64_upstream_duration_seconds"]
	if h == nil {
		t.Fatal("upstream histogram missing")
	}
	for _, l := range []map[string]string{
		{"interface": "faith0", "upstream": "192.0.2.53:53", "result": "noerror"},
		{"interface": "faith0", "upstream": "192.0.2.54:53", "result": "timeout"},
		{"interface": "faith0", "upstream": "192.0.2.55:53", "result": "servfail"},
	} {
		if n, ok := h.histCount(l); !ok || n != 1 {
			t.Errorf("upstream histogram %v: count %d (found %v); want 1", l, n, ok)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil {
		t.Error("Go and process metrics missing")
	}
}

func TestHealth(t *testing.T) {
	src := &fakeSource{}
	h := New(src).Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
	src.ready = errors.New("faith0: keepfaith is 0, nothing is captured")
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "keepfaith is 0") {
		t.Errorf("/readyz not ready: %d %q", code, body)
	}
	if code, _ := get("/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}
}

func TestListen(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := New(&fakeSource{})
	s, err := m.Listen("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz over HTTP: %d", resp.StatusCode)
	}
	// The same address again: an error naming it, at once.
	if _, err := New(&fakeSource{}).Listen(s.Addr().String(), log); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("second listen on %s: %v", s.Addr(), err)
	}
}

// TestBuildInfo: faithif_build_info is 1 with the build's labels.
func TestBuildInfo(t *testing.T) {
	m := newWithBuild(&fakeSource{}, buildinfo.Info{Version: "v1.2.3", Commit: "0123456789abcdef", Modified: true, GoVersion: "go1.26.8"})
	fams := scrape(t, m.Handler())
	want := map[string]string{"version": "v1.2.3", "revision": "0123456789ab-dirty", "goversion": "go1.26.8"}
	f := fams["faithif_build_info"]
	if f == nil || len(f.f.GetMetric()) != 1 {
		t.Fatalf("faithif_build_info: %v", f)
	}
	if v, ok := f.value(want); !ok || v != 1 {
		t.Errorf("faithif_build_info%v = %v (found %v), want 1; series: %v", want, v, ok, f.f.GetMetric())
	}
}

// TestLint: the exposition passes the linter promtool uses (promlint), with
// every counter and label of a fully filled status, as `promtool check
// metrics` would on a scrape.
func TestLint(t *testing.T) {
	st := status.Status{Name: "faith0"}
	for _, f := range status.Fields() {
		if f.Metric == nil {
			continue
		}
		if _, ok := f.Value(&st).(map[string]uint64); ok {
			reflect.ValueOf(&st).Elem().FieldByName(fieldName(t, f.JSON)).Set(reflect.ValueOf(map[string]uint64{"some_key": 1}))
		}
	}
	m := New(&fakeSource{st: []status.Status{st}})
	m.ObserveDial("faith0")(time.Millisecond, true)
	m.ObserveUpstream("faith0")("192.0.2.53:53", time.Millisecond, "noerror")
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// fieldName returns the name of Status's field (or embedded field) whose
// JSON key is key.
func fieldName(t *testing.T, key string) string {
	t.Helper()
	var find func(reflect.Type) string
	find = func(typ reflect.Type) string {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				if n := find(f.Type); n != "" {
					return n
				}
				continue
			}
			if strings.Split(f.Tag.Get("json"), ",")[0] == key {
				return f.Name
			}
		}
		return ""
	}
	n := find(reflect.TypeFor[status.Status]())
	if n == "" {
		t.Fatalf("no field with JSON key %q", key)
	}
	return n
}
