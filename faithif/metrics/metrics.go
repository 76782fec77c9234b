// Package metrics serves what a network team watches of a faithif process
// over HTTP: Prometheus metrics on /metrics, /healthz (the process is alive)
// and /readyz (every interface up, keepfaith=1, every stack running).
//
// Counters are read from the running instances when Prometheus scrapes, so
// the packet and flow paths never touch a metric; only the IPv4 dial
// latency is observed as it happens, into a histogram.
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

	"github.com/faithif/faithif/faithif"
)

// Source is the process the metrics describe.
type Source interface {
	// Statuses returns the state and counters of every interface.
	Statuses() []faithif.Status
	// Ready returns nil when the process relays flows: every interface is
	// up, keepfaith is 1 and every stack is running; else it says why not.
	Ready() error
}

// Metrics is a faithif process's metrics registry.
type Metrics struct {
	src  Source
	reg  *prometheus.Registry
	dial *prometheus.HistogramVec
}

// DialBuckets are the dial latency histogram's buckets, in seconds: from a
// LAN's 0.1 ms to a dial timeout's tens of seconds.
var DialBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}

// New returns the metrics of src, with Go runtime and process metrics.
func New(src Source) *Metrics {
	m := &Metrics{src: src, reg: prometheus.NewRegistry()}
	m.dial = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "faithif_dial_duration_seconds",
		Help:    "Time to connect to the IPv4 server, by result (ok or failed).",
		Buckets: DialBuckets,
	}, []string{"interface", "result"})
	m.reg.MustRegister(m.dial, collector{src: src},
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

// desc describes one metric family of the collector.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("faithif_"+name, help, append([]string{"interface"}, labels...), nil)
}

var (
	descKeepFaith      = desc("keepfaith", "net.inet6.ip6.keepfaith as the interface applies it: 1 captures, 0 discards.")
	descUp             = desc("interface_up", "1 while the interface's stack runs and it is not draining.")
	descFlowsOpen      = desc("flows_open", "Relayed flows open now.")
	descFlows          = desc("flows_total", "Captured flows by the relay's decision: accepted, refused (the IPv4 server reset), denied, unreachable, timed_out, limited, error.", "outcome")
	descFlowsEnded     = desc("flows_ended_total", "Relayed flows finished, by how they ended.", "end")
	descBytes          = desc("bytes_total", "Payload bytes relayed, by direction.", "direction")
	descHandshakes     = desc("handshakes_in_flight", "Captured SYNs waiting for their IPv4 connection.")
	descClients        = desc("clients", "Client /64s with flows open or being set up.")
	descPackets        = desc("packets_total", "Packets crossing the TUN device, by direction.", "direction")
	descDiscarded      = desc("packets_discarded_total", "Inbound packets discarded before the stack, by reason.", "reason")
	descICMPIn         = desc("icmp6_received_total", "Inbound ICMPv6 messages by type (errors are delivered to their flow).", "type")
	descICMPSent       = desc("icmp6_sent_total", "ICMPv6 error messages sent, by type (Destination Unreachable refuses flows).", "type")
	descICMPRateLimit  = desc("icmp6_errors_rate_limited_total", "ICMPv6 errors suppressed by the rate limit.")
	descFDLimit        = desc("fd_limit", "The process's open-files limit; each relayed flow holds one descriptor.")
	descFlowsFDLimited = desc("flows_fd_limit_total", "Flows refused because the process was short of file descriptors.")
	descRules          = desc("rules", "Access rules in force.")
)

// collector reads the instances' counters at scrape time.
type collector struct{ src Source }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeepFaith, descUp, descFlowsOpen, descFlows, descFlowsEnded, descBytes,
		descHandshakes, descClients, descPackets, descDiscarded, descICMPIn, descICMPSent, descICMPRateLimit,
		descFDLimit, descFlowsFDLimited, descRules} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, st := range c.src.Statuses() {
		n := st.Name
		gauge(descKeepFaith, b2f(st.KeepFaith), n)
		gauge(descUp, b2f(!st.Draining), n)
		gauge(descFlowsOpen, float64(st.FlowsOpen), n)
		for o, v := range st.FlowOutcomes {
			counter(descFlows, v, n, o)
		}
		for e, v := range st.FlowEnds {
			counter(descFlowsEnded, v, n, e)
		}
		counter(descBytes, st.BytesIn, n, "client_to_server")
		counter(descBytes, st.BytesOut, n, "server_to_client")
		gauge(descHandshakes, float64(st.HandshakesInFlight), n)
		gauge(descClients, float64(st.Clients), n)
		counter(descPackets, st.PacketsIn, n, "in")
		counter(descPackets, st.PacketsOut, n, "out")
		for r, v := range st.PacketsDiscarded {
			counter(descDiscarded, v, n, r)
		}
		for t, v := range st.ICMPv6In {
			counter(descICMPIn, v, n, t)
		}
		for t, v := range st.ICMPv6Out {
			counter(descICMPSent, v, n, t)
		}
		counter(descICMPRateLimit, st.ICMPRateLimited, n)
		gauge(descFDLimit, float64(st.FDLimit), n)
		counter(descFlowsFDLimited, st.FlowsFDLimit, n)
		gauge(descRules, float64(st.RuleCount), n)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
