package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faithif/faithif/faithif/buildinfo"
	"github.com/faithif/faithif/faithif/status"
)

// Source is the process the metrics describe.
type Source interface {
	// Statuses returns the state and counters of every interface.
	Statuses() []status.Status
	// Ready returns nil when the process relays flows: every interface is
	// up, keepfaith is 1 and every stack is running; else it says why not.
	Ready() error
}

// Metrics is a faithif process's metrics registry.
type Metrics struct {
	src      Source
	reg      *prometheus.Registry
	dial     *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
}

// dialBuckets are the dial latency histogram's buckets, in seconds: from a
// LAN's 0.1 ms to a dial timeout's tens of seconds.
var dialBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}

// upstreamBuckets are the DNS64 upstream latency histogram's buckets, in
// seconds: from a cache next door's 0.25 ms to the longest upstream
// timeout.
var upstreamBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30}

// New returns the metrics of src, with faithif_build_info (the binary's
// version and commit, buildinfo.Read) and Go runtime and process metrics.
func New(src Source) *Metrics {
	return newWithBuild(src, buildinfo.Read())
}

func newWithBuild(src Source, bi buildinfo.Info) *Metrics {
	m := &Metrics{src: src, reg: prometheus.NewRegistry()}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "faithif_build_info",
		Help:        "Always 1; its labels say which faithif this is: the module version, the commit (with -dirty for uncommitted changes) and the Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.ShortCommit(), "goversion": bi.GoVersion},
	})
	build.Set(1)
	m.reg.MustRegister(build)
	m.dial = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "faithif_dial_duration_seconds",
		Help:    "Time to connect to the IPv4 server, by result (ok or failed).",
		Buckets: dialBuckets,
	}, []string{"interface", "result"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "faithif_dns64_upstream_duration_seconds",
		Help:    "Time a DNS64 upstream took to answer one query, by upstream and result: the answer's RCODE (noerror, nxdomain, servfail, refused, ...), timeout (no answer in time), or failed (an error, or no usable answer).",
		Buckets: upstreamBuckets,
	}, []string{"interface", "upstream", "result"})
	m.reg.MustRegister(m.dial, m.upstream, collector{src: src, families: families()},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveDial returns the function the relay of interface name calls after
// every IPv4 connection attempt.
func (m *Metrics) ObserveDial(name string) func(time.Duration, bool) {
	ok, failed := m.dial.WithLabelValues(name, "ok"), m.dial.WithLabelValues(name, "failed")
	return func(d time.Duration, success bool) {
		if success {
			ok.Observe(d.Seconds())
		} else {
			failed.Observe(d.Seconds())
		}
	}
}

// ObserveUpstream returns the function the DNS64 responder of interface
// name calls after every upstream query.
func (m *Metrics) ObserveUpstream(name string) func(upstream string, d time.Duration, result string) {
	return func(upstream string, d time.Duration, result string) {
		m.upstream.WithLabelValues(name, upstream, result).Observe(d.Seconds())
	}
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.src.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Server is the metrics HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen binds addr (HOST:PORT) at once, so that an address in use is an
// error before anything else is set up, and serves m on it in the
// background.
func (m *Metrics) Listen(addr string, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{
		srv:  &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "address", addr, "error", err.Error())
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting scrapes in progress finish for up to a
// second.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
}

// family is one metric family of the collector: its description and the
// Status fields that are its series.
type family struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	fields []status.Field
}

// families builds the collector's families from the status fields' own
// description (package status): the metric names, help texts and labels are
// written once, beside the counters.
func families() []family {
	var out []family
	at := map[string]int{}
	for _, f := range status.Fields() {
		m := f.Metric
		if m == nil {
			continue
		}
		k, ok := at[m.Name]
		if !ok {
			labels := []string{"interface"}
			if m.Label != "" {
				labels = append(labels, m.Label)
			}
			kind := prometheus.GaugeValue
			if m.Counter {
				kind = prometheus.CounterValue
			}
			k = len(out)
			at[m.Name] = k
			out = append(out, family{desc: prometheus.NewDesc("faithif_"+m.Name, m.Help, labels, nil), kind: kind})
		}
		out[k].fields = append(out[k].fields, f)
	}
	return out
}

// collector reads the instances' counters at scrape time.
type collector struct {
	src      Source
	families []family
}

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.src.Statuses() {
		for _, fam := range c.families {
			for _, f := range fam.fields {
				c.series(ch, fam, f, &st)
			}
		}
	}
}

// series sends the series of field f of st: one, or one per key of a map.
func (c collector) series(ch chan<- prometheus.Metric, fam family, f status.Field, st *status.Status) {
	send := func(v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(fam.desc, fam.kind, v, append([]string{st.Name}, labels...)...)
	}
	switch v := f.Value(st).(type) {
	case map[string]uint64:
		for k, n := range v {
			send(float64(n), k)
		}
	default:
		var labels []string
		if f.Metric.LabelValue != "" {
			labels = []string{f.Metric.LabelValue}
		}
		send(number(v), labels...)
	}
}

// number converts a scalar field to a sample value; a bool is 1 or 0.
func number(v any) float64 {
	switch x := v.(type) {
	case bool:
		if x {
			return 1
		}
		return 0
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("metrics: a %T field cannot be a metric", v))
}
