package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// filled returns a Status whose every field holds a value distinct from
// every other field's, and a map key per map field.
func filled(t *testing.T) *Status {
	t.Helper()
	st := &Status{}
	v := reflect.ValueOf(st).Elem()
	n := 100
	for _, f := range Fields() {
		n++
		fv := v.FieldByIndex(f.index)
		switch fv.Kind() {
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Int, reflect.Int64:
			fv.SetInt(int64(n))
		case reflect.Uint64:
			fv.SetUint(uint64(n))
		case reflect.Float64:
			fv.SetFloat(float64(n))
		case reflect.String:
			fv.SetString(fmt.Sprintf("s%d", n))
		case reflect.Slice:
			if fv.Type().Elem().Kind() == reflect.Int {
				fv.Set(reflect.ValueOf([]int{n}))
				break
			}
			fv.Set(reflect.ValueOf([]string{fmt.Sprintf("l%d", n)}))
		case reflect.Map:
			fv.Set(reflect.ValueOf(map[string]uint64{fmt.Sprintf("k%d", n): uint64(n)}))
		default:
			t.Fatalf("field %s: kind %s has no rendering", f.JSON, fv.Kind())
		}
	}
	st.SchemaVersion = SchemaVersion
	return st
}

// TestJSONKeysFollowMetrics: every counter or gauge has the JSON key of its
// metric (without faithif_); a series of a labelled family puts the label
// value before _total (bytes_total{direction="client_to_server"} is
// bytes_client_to_server_total), a map field is the family itself.
func TestJSONKeysFollowMetrics(t *testing.T) {
	for _, f := range Fields() {
		m := f.Metric
		if m == nil {
			continue
		}
		want := m.Name
		if m.LabelValue != "" {
			base, total := strings.CutSuffix(m.Name, "_total")
			want = base + "_" + m.LabelValue
			if total {
				want += "_total"
			}
		}
		if f.JSON != want {
			t.Errorf("JSON key %q for metric faithif_%s%s: want %q", f.JSON, m.Name, map[bool]string{true: "{" + m.Label + "=" + m.LabelValue + "}"}[m.LabelValue != ""], want)
		}
	}
}

func TestDecodeSchemaVersion(t *testing.T) {
	st := filled(t)
	st.SchemaVersion = 1
	b, _ := json.Marshal(st)
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "schema_version 1, want 2") {
		t.Errorf("Decode of a version 1 status: %v, want an error naming both versions", err)
	}
}

func TestFieldsDescribeEveryField(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Fields() {
		if seen[f.JSON] {
			t.Errorf("json key %q twice", f.JSON)
		}
		seen[f.JSON] = true
	}
	// Every key of the JSON form is a described field, and back.
	b, err := json.Marshal(filled(t))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	json.Unmarshal(b, &keys)
	if len(keys) != len(seen) {
		t.Errorf("JSON has %d keys, Fields %d", len(keys), len(seen))
	}
	for k := range keys {
		if !seen[k] {
			t.Errorf("JSON key %q is not in Fields", k)
		}
	}
}

// TestMetricNames: the metrics the README documents, each from its fields.
func TestMetricNames(t *testing.T) {
	want := map[string]string{
		"keepfaith": "", "interface_up": "", "flows_open": "", "flows_total": "outcome",
		"flows_ended_total": "end", "bytes_total": "direction", "handshakes_in_flight": "", "clients": "",
		"packets_total": "direction", "packets_discarded_total": "reason", "icmp6_received_total": "type",
		"icmp6_sent_total": "type", "icmp6_errors_rate_limited_total": "", "fd_limit": "",
		"flows_fd_limit_total": "", "rules": "", "flows_handshake_first_total": "", "refusals_repeated_total": "",
		"dials_in_progress": "", "flows_dials_limited_total": "",
		"handshakes_dropped_total": "", "handshakes_evicted_total": "", "handshakes_expired_total": "",
		"syns_held": "", "syns_not_held_total": "", "icmp6_ptb_mtu_raised_total": "",
		"under_pressure": "", "syns_challenged_total": "", "syns_validated_total": "",
		"syn_challenges_rate_limited_total": "", "syn_challenge_rsts_rejected_total": "", "validated_sources": "", "claimed_flows_refused_total": "",
		"last_reload_successful": "", "rules_loaded_timestamp_seconds": "", "reloads_total": "result",
		"dns64_queries_total": "type", "dns64_query_results_total": "result", "dns64_synthesized_total": "kind",
		"dns64_synthesis_suppressed_total": "reason", "dns64_cache_entries": "", "dns64_cache_hits_total": "",
		"dns64_cache_misses_total": "",
		"ftp_sessions_total":       "", "ftp_commands_translated_total": "", "ftp_commands_refused_total": "",
		"ftp_bounces_refused_total": "", "ftp_data_connections_total": "mode", "ftp_data_listeners_expired_total": "",
		"ftp_tls_sessions_total": "",
	}
	got := map[string]string{}
	for _, f := range Fields() {
		if f.Metric != nil {
			got[f.Metric.Name] = f.Metric.Label
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics and labels = %v;\nwant %v", got, want)
	}
}

// TestTextPrintsEverything: the text form shows every field's value, on
// its group's line.
func TestTextPrintsEverything(t *testing.T) {
	st := filled(t)
	var b bytes.Buffer
	if err := st.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	t.Log("\n" + text)
	lines := map[string]string{} // group -> the rest of its line
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n")[1:] {
		g, rest, ok := strings.Cut(strings.TrimPrefix(l, "  "), "  ")
		if !ok {
			t.Fatalf("line %q: want \"  GROUP  VALUES\"", l)
		}
		lines[g] = strings.TrimSpace(rest)
	}
	for _, f := range Fields() {
		if f.Group == "-" {
			continue
		}
		want := formatValue(f.Value(st))
		if f.Item != "" {
			want = f.Item + " " + want
		}
		items := strings.Split(lines[f.Group], ", ")
		if !slices.Contains(items, want) && lines[f.Group] != want {
			t.Errorf("field %s: %q is not on the %q line (%q)", f.JSON, want, f.Group, lines[f.Group])
		}
	}
	head := regexp.MustCompile(fmt.Sprintf(`^%s: +pid %d \(faithif %s\), up 1m%ds\n`, st.Name, st.PID, st.Owner, int(st.UptimeSeconds)-60))
	if !head.MatchString(text) {
		t.Errorf("heading %q; want /%s/", strings.SplitN(text, "\n", 2)[0], head)
	}
}

// TestTextShowIf: the DNS64 lines are printed while a responder listens,
// and none without one but the listen address's "none".
func TestTextShowIf(t *testing.T) {
	st := filled(t)
	var b bytes.Buffer
	st.WriteText(&b)
	for _, g := range []string{"dns64", "dns64 queries", "dns64 results", "dns64 synthesized", "dns64 suppressed", "dns64 cache"} {
		if !strings.Contains(b.String(), "\n  "+g+"  ") {
			t.Errorf("with a listen address, no %q line:\n%s", g, b.String())
		}
	}
	st.DNS64Listen = nil
	b.Reset()
	st.WriteText(&b)
	var dns64Lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "  dns64") {
			dns64Lines = append(dns64Lines, strings.Join(strings.Fields(l), " "))
		}
	}
	if want := []string{"dns64 listen none"}; !slices.Equal(dns64Lines, want) {
		t.Errorf("without a listen address: %q, want %q", dns64Lines, want)
	}
}

// TestJSONKeys pins the keys of the JSON form, which scripts read (bench.sh
// reads flows_open): renaming one must be a decision, not an accident.
func TestJSONKeys(t *testing.T) {
	want := []string{
		"schema_version", "name", "pid", "owner", "uptime_seconds", "prefixes", "routes", "access_file", "rules", "last_reload_successful",
		"rules_loaded_timestamp_seconds", "reloads_ok_total", "reloads_failed_total", "mtu", "grace", "keepfaith",
		"draining", "interface_up", "not_ready", "warnings", "flows_open", "flows_decided", "flows_accepted", "flows_refused",
		"flows_denied", "flows_limited", "flows_total", "flows_ended_total", "clients", "bytes_client_to_server_total", "bytes_server_to_client_total",
		"fd_limit", "flows_fd_limit_total", "flows_handshake_first_total", "refusals_repeated_total", "dials_in_progress",
		"flows_dials_limited_total", "max_flows_per_client",
		"max_handshakes_per_client", "max_flows_per_address", "max_handshakes_per_address", "max_handshakes",
		"handshakes_in_flight", "handshakes_dropped_total", "handshakes_evicted_total", "handshakes_expired_total", "syns_held",
		"syns_not_held_total", "under_pressure", "syns_challenged_total", "syns_validated_total", "syn_challenges_rate_limited_total",
		"syn_challenge_rsts_rejected_total", "validated_sources", "claimed_flows_refused_total", "packets_in_total", "packets_out_total", "packets_discarded_total", "icmp6_received_total", "icmp6_ptb_mtu_raised_total", "icmp6_sent_total",
		"icmp6_errors_sent", "icmp6_errors_rate_limited_total",
		"dns64_listen", "dns64_upstreams", "dns64_prefix", "dns64_queries_total", "dns64_query_results_total",
		"dns64_synthesized_total", "dns64_synthesis_suppressed_total", "dns64_cache_entries", "dns64_cache_hits_total",
		"dns64_cache_misses_total",
		"ftp_ports", "ftp_sessions_total", "ftp_commands_translated_total", "ftp_commands_refused_total", "ftp_bounces_refused_total",
		"ftp_data_connections_passive_total", "ftp_data_connections_active_total", "ftp_data_listeners_expired_total", "ftp_tls_sessions_total", "privileged_ports", "proxy_protocol_ports",
	}
	var got []string
	for _, f := range Fields() {
		got = append(got, f.JSON)
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON keys:\n got %q\nwant %q", got, want)
	}
}

func TestDecodeStrict(t *testing.T) {
	st := filled(t)
	b, _ := json.Marshal(st)
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("Decode(Marshal(st)) = %+v, %v", got, err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	delete(m, "flows_open")
	b2, _ := json.Marshal(m)
	if _, err := Decode(b2); err == nil || !strings.Contains(err.Error(), "flows_open") {
		t.Errorf("a missing key: %v; want an error naming it", err)
	}
	m["flows_open"], m["flows_opened"] = 1, 1
	b3, _ := json.Marshal(m)
	if _, err := Decode(b3); err == nil || !strings.Contains(err.Error(), "flows_opened") {
		t.Errorf("an unknown key: %v; want an error naming it", err)
	}
	list, err := DecodeList([]byte("[" + string(b) + "," + string(b) + "]"))
	if err != nil || len(list) != 2 {
		t.Errorf("DecodeList = %d, %v", len(list), err)
	}
	if _, err := DecodeList([]byte("[" + string(b2) + "]")); err == nil || !strings.Contains(err.Error(), "element 0") {
		t.Errorf("DecodeList with a bad element: %v", err)
	}
}

func TestParseMetricTags(t *testing.T) {
	type bad struct {
		A uint64            `json:"a" metric:"histogram a" help:"x"`
		B uint64            `json:"b" metric:"counter b" help:""`
		C map[string]uint64 `json:"c" metric:"counter c" help:"x"`
		D uint64            `json:"d" metric:"counter d label" help:"x"`
	}
	ty := reflect.TypeFor[bad]()
	for i := range ty.NumField() {
		sf := ty.Field(i)
		if _, err := parseMetric(sf.Tag.Get("metric"), sf.Tag.Get("help"), sf.Type); err == nil {
			t.Errorf("field %s: tag %q accepted", sf.Name, sf.Tag)
		}
	}
	fs := []Field{
		{JSON: "a", Metric: &Metric{Name: "x", Counter: true, Help: "h", Label: "d", LabelValue: "in"}},
		{JSON: "b", Metric: &Metric{Name: "x", Counter: true, Help: "other", Label: "d", LabelValue: "out"}},
	}
	if err := checkFamilies(fs); err == nil {
		t.Error("a family whose fields disagree on help was accepted")
	}
}
