package control

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

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/status"
)

// Controller is the running instance as the control socket sees it.
type Controller interface {
	Status() status.Status
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
	Status *status.Status `json:"status,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Server serves an instance's control socket.
type Server struct {
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
func Listen(path string, c Controller, log *slog.Logger) (*Server, error) {
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
	return &Server{path: path, ln: ln, c: c, log: log}, nil
}

// Serve answers requests until the server is closed. Running out of file
// descriptors (or any other accept error) only pauses it.
func (s *Server) Serve() {
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
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) handle(conn *net.UnixConn) {
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

func (c Client) call(ctx context.Context, req request) (*status.Status, error) {
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
func (c Client) Status(ctx context.Context) (*status.Status, error) {
	return c.call(ctx, request{Op: "status"})
}

// SetKeepFaith sets the instance's keepfaith value.
func (c Client) SetKeepFaith(ctx context.Context, on bool) (*status.Status, error) {
	return c.call(ctx, request{Op: "keepfaith", KeepFaith: on})
}

// Destroy asks the instance to drain its flows for up to grace, remove its
// interface and exit.
func (c Client) Destroy(ctx context.Context, grace time.Duration) (*status.Status, error) {
	return c.call(ctx, request{Op: "destroy", Grace: grace})
}

// Reload asks the instance to reread its access rules.
func (c Client) Reload(ctx context.Context) (*status.Status, error) {
	return c.call(ctx, request{Op: "reload"})
}

// SetKeepFaith stores the global keepfaith value in dir, so that interfaces
// created later start with it, and applies it to every instance running
// there.
func SetKeepFaith(ctx context.Context, dir faithif.RunDir, on bool) error {
	if err := dir.SetKeepFaith(on); err != nil {
		return err
	}
	names, err := dir.Instances()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := Client{Path: dir.SocketPath(name)}.SetKeepFaith(cctx, on)
		cancel()
		if err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Statuses asks every instance running in dir for its status, in name
// order; a socket nobody answers on (left by a crashed instance) is
// skipped.
func Statuses(ctx context.Context, dir faithif.RunDir) ([]*status.Status, error) {
	names, err := dir.Instances()
	if err != nil {
		return nil, err
	}
	all := []*status.Status{}
	for _, n := range names {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := Client{Path: dir.SocketPath(n)}.Status(cctx)
		cancel()
		if errors.Is(err, ErrNotRunning) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		all = append(all, st)
	}
	return all, nil
}

// WaitGone waits until the instance has exited (its socket, removed last,
// is gone) or ctx is done.
func (c Client) WaitGone(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(c.Path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
