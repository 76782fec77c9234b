package faithif

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Status is what a running instance reports through its control socket.
type Status struct {
	Name               string            `json:"name"`
	PID                int               `json:"pid"`
	Prefixes           []string          `json:"prefixes"`
	Routes             []string          `json:"routes,omitempty"` // installed by --route
	Rules              string            `json:"rules,omitempty"`  // the access file
	RuleCount          int               `json:"rule_count"`
	Draining           bool              `json:"draining"`
	MTU                int               `json:"mtu"`
	KeepFaith          bool              `json:"keepfaith"`
	UptimeSeconds      float64           `json:"uptime_seconds"`
	FlowsOpen          int64             `json:"flows_open"`
	FlowsTotal         uint64            `json:"flows_total"`
	FlowsAccepted      uint64            `json:"flows_accepted"`
	FlowsRefused       uint64            `json:"flows_refused"`
	FlowsDenied        uint64            `json:"flows_denied"`
	FlowsLimited       uint64            `json:"flows_limited"`  // refused by a per-client limit
	FlowsFDLimit       uint64            `json:"flows_fd_limit"` // refused: out of file descriptors
	FDLimit            uint64            `json:"fd_limit"`       // RLIMIT_NOFILE (soft, raised to hard at start)
	Clients            int               `json:"clients"`        // client /64s with flows
	MaxFlowsPerClient  int               `json:"max_flows_per_client"`
	MaxHandshakesPer   int               `json:"max_handshakes_per_client"`
	HandshakesInFlight int64             `json:"handshakes_in_flight"`
	ICMPErrorsSent     uint64            `json:"icmp6_errors_sent"`         // Destination Unreachable sent refusing flows
	ICMPRateLimited    uint64            `json:"icmp6_errors_rate_limited"` // suppressed by the token bucket
	BytesIn            uint64            `json:"bytes_in"`                  // client to server
	BytesOut           uint64            `json:"bytes_out"`                 // server to client
	PacketsIn          uint64            `json:"packets_in"`
	PacketsOut         uint64            `json:"packets_out"`
	PacketsDiscarded   map[string]uint64 `json:"packets_discarded"`
	ICMPv6In           map[string]uint64 `json:"icmp6_in"`      // by type; errors are delivered to the flow, the rest discarded
	ICMPv6Out          map[string]uint64 `json:"icmp6_out"`     // errors sent, by type
	FlowOutcomes       map[string]uint64 `json:"flow_outcomes"` // decided flows by outcome: accepted, refused, denied, unreachable, timed_out, limited, error
	FlowEnds           map[string]uint64 `json:"flow_ends"`     // finished relayed flows by how they ended
}

// Controller is the running instance as the control socket sees it.
type Controller interface {
	Status() Status
	SetKeepFaith(on bool)
	// Destroy drains the instance: no new flows, open ones get grace to
	// finish; then the interface is removed. A second Destroy is immediate.
	Destroy(grace time.Duration)
	// Reload rereads the access rules; on error the old rules stay.
	Reload() error
}

// request and response are the control protocol: one JSON request and one
// JSON response per connection.
type request struct {
	Op        string        `json:"op"` // "status", "keepfaith", "destroy", "reload"
	KeepFaith bool          `json:"keepfaith,omitempty"`
	Grace     time.Duration `json:"grace,omitempty"`
}

type response struct {
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ControlServer serves an instance's control socket.
type ControlServer struct {
	path string
	ln   *net.UnixListener
	c    Controller
	log  *slog.Logger
}

// Errors about whether an instance is running.
var (
	// ErrRunning means another instance already answers on the control socket.
	ErrRunning = errors.New("already running")
	// ErrNotRunning means no instance answers on the control socket.
	ErrNotRunning = errors.New("not running")
)

// Listen creates the control socket at path, mode 0600. A socket left by a
// crashed instance (nobody answers) is removed and replaced; one that
// answers means the interface is already run by someone else.
func Listen(path string, c Controller, log *slog.Logger) (*ControlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("control socket %s: %w", path, ErrRunning)
		}
		log.Warn("replacing stale control socket", "path", path, "error", err.Error())
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	old := syscall.Umask(0o177) // the socket is born 0600, never briefly open
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &ControlServer{path: path, ln: ln, c: c, log: log}, nil
}

// Serve answers requests until the server is closed. Running out of file
// descriptors (or any other accept error) only pauses it.
func (s *ControlServer) Serve() {
	for {
		conn, err := s.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("control socket: accept", "error", err.Error())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go s.handle(conn)
	}
}

// Close removes the control socket.
func (s *ControlServer) Close() error { return s.ln.Close() }

func (s *ControlServer) handle(conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	var req request
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		json.NewEncoder(conn).Encode(response{Error: "bad request: " + err.Error()})
		return
	}
	var resp response
	switch req.Op {
	case "status":
		st := s.c.Status()
		resp.Status = &st
	case "keepfaith":
		s.c.SetKeepFaith(req.KeepFaith)
		st := s.c.Status()
		resp.Status = &st
	case "destroy":
		st := s.c.Status()
		resp.Status = &st
		defer s.c.Destroy(req.Grace) // after the answer is written
	case "reload":
		if err := s.c.Reload(); err != nil {
			resp.Error = err.Error()
			break
		}
		st := s.c.Status()
		resp.Status = &st
	default:
		resp.Error = fmt.Sprintf("unknown operation %q", req.Op)
	}
	json.NewEncoder(conn).Encode(resp)
}

// Client talks to a running instance through its control socket.
type Client struct {
	Path string
}

func (c Client) call(ctx context.Context, req request) (*Status, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no answer on %s)", ErrNotRunning, c.Path)
		}
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", c.Path, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("empty answer from %s", c.Path)
	}
	return resp.Status, nil
}

// Status asks the instance for its status.
func (c Client) Status(ctx context.Context) (*Status, error) {
	return c.call(ctx, request{Op: "status"})
}

// SetKeepFaith sets the instance's keepfaith value.
func (c Client) SetKeepFaith(ctx context.Context, on bool) (*Status, error) {
	return c.call(ctx, request{Op: "keepfaith", KeepFaith: on})
}

// Destroy asks the instance to drain its flows for up to grace, remove its
// interface and exit.
func (c Client) Destroy(ctx context.Context, grace time.Duration) (*Status, error) {
	return c.call(ctx, request{Op: "destroy", Grace: grace})
}

// Reload asks the instance to reread its access rules.
func (c Client) Reload(ctx context.Context) (*Status, error) {
	return c.call(ctx, request{Op: "reload"})
}
