package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/faithif/status"
	"golang.org/x/sys/unix"
)

// Controller is the running instance as the control socket sees it.
type Controller interface {
	Status() status.Status
	SetKeepFaith(on bool)
	// Destroy drains the instance: no new flows, open ones get grace to
	// finish; then the interface is removed. A second Destroy is immediate.
	// The server never calls it for an interface of the appliance (a
	// Status whose Owner is status.OwnerRun): it refuses the request.
	Destroy(grace time.Duration)
	// Reload rereads the access rules, from file if it is not empty (which
	// then replaces the access file); on error the old rules and file
	// stay.
	Reload(file string) error
	// Flows returns the flows being set up or relayed that f selects,
	// sorted.
	Flows(f flows.Filter) flows.Table
}

// request and response are the control protocol: one JSON request (at most
// MaxRequest bytes) and one JSON response per connection.
type request struct {
	Op        string        `json:"op"` // "status", "keepfaith", "destroy", "reload", "flows"
	KeepFaith bool          `json:"keepfaith,omitempty"`
	Grace     time.Duration `json:"grace,omitempty"`
	// Access is the access file a reload switches to (an absolute path);
	// empty: the one in use.
	Access string `json:"access,omitempty"`
	// Client and Dest filter the flows ("flows"), as flows.ParseClient
	// and flows.ParseDest read them; empty: every flow.
	Client string `json:"client,omitempty"`
	Dest   string `json:"dest,omitempty"`
}

type response struct {
	Status *status.Status `json:"status,omitempty"`
	Flows  *flows.Table   `json:"flows,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// MaxRequest is the largest request the server reads, in bytes. Requests
// are a few dozen bytes; a larger one is answered with an error and the
// connection is closed, without reading the rest.
const MaxRequest = 64 << 10

// maxAnswer is the largest answer the client reads, in bytes (a status is a
// few KiB).
const maxAnswer = 4 << 20

// maxFlowsAnswer is the largest answer to "flows" the client reads, in
// bytes: a flow takes at most about 400 bytes (addresses of the longest
// form), so this holds over 600,000 flows; 15,000 take about 4 MiB.
const maxFlowsAnswer = 256 << 20

// MaxConns is the number of connections the server serves at once. Beyond
// it, connections are not accepted until one being served ends: they wait
// in the listen queue, costing no goroutine and no buffer, and are served in
// the order they came (see the package doc).
const MaxConns = 16

// connTimeout is how long a connection may take to send its request and
// read the answer.
const connTimeout = 5 * time.Second

// errTooLarge is the error of a request over MaxRequest bytes.
var errTooLarge = fmt.Errorf("request too large: over %d bytes", MaxRequest)

// capReader reads from r until n bytes have been read, then fails with
// errTooLarge instead of reading more.
type capReader struct {
	r io.Reader
	n int64
}

// Read implements io.Reader.
func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// readRequest decodes one request from r, reading at most MaxRequest bytes
// of it: a request that does not end within them fails with errTooLarge.
func readRequest(r io.Reader) (request, error) {
	var req request
	err := json.NewDecoder(&capReader{r: r, n: MaxRequest}).Decode(&req)
	return req, err
}

// Server serves an instance's control socket.
type Server struct {
	path    string
	ln      *net.UnixListener
	id      fileID // of the socket Listen made at path
	c       Controller
	log     *slog.Logger
	timeout time.Duration // connTimeout; shorter in tests
	every   time.Duration // WatchEvery; shorter in tests

	slots     chan struct{} // one per connection being served, MaxConns
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// Errors about whether an instance is running.
var (
	// ErrRunning means another instance already answers on the control socket.
	ErrRunning = errors.New("already running")
	// ErrNotRunning means no instance answers on the control socket.
	ErrNotRunning = errors.New("not running")
)

// Listen creates the control socket at path, mode 0600, in a run
// directory faithif can trust (faithif.RunDir; made if missing). A socket
// left by a crashed instance (nobody answers) is removed and replaced; one
// that answers means the interface is already run by someone else.
func Listen(path string, c Controller, log *slog.Logger) (*Server, error) {
	if err := faithif.RunDir(filepath.Dir(path)).Make(); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: something else is there (%s): remove it", path, fi.Mode().Type())
		}
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
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{
		path:    path,
		ln:      ln,
		id:      idOf(fi),
		c:       c,
		log:     log,
		timeout: connTimeout,
		every:   WatchEvery,
		slots:   make(chan struct{}, MaxConns),
		done:    make(chan struct{}),
	}, nil
}

// fileID is what tells one file from another: device and inode.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}

// WatchEvery is how often Removed looks at the control socket's path.
const WatchEvery = time.Second

// Removed returns a channel that is closed once the control socket's path
// no longer names the socket Listen made there: it was removed (rm, or its
// run directory was), or replaced by another file. An instance that no
// command can reach any more then stops, as wireguard-go's does when its
// UAPI socket is removed. The path is looked at every WatchEvery until
// the server is closed; closing the server, which removes the socket
// itself, never closes the channel.
func (s *Server) Removed() <-chan struct{} {
	removed := make(chan struct{})
	go func() {
		tick := time.NewTicker(s.every)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			if !s.gone() {
				continue
			}
			select {
			case <-s.done: // Close removed it
			default:
				close(removed)
			}
			return
		}
	}()
	return removed
}

// gone reports whether the socket's path no longer names the socket.
// Another error than a missing file (a transient one) is not taken as
// gone: the next look decides.
func (s *Server) gone() bool {
	fi, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return true
	case err != nil:
		return false
	}
	return idOf(fi) != s.id
}

// Serve answers requests until the server is closed, at most MaxConns at
// once: it accepts a connection only when fewer are being served, so the
// others wait in the listen queue, in order. Running out of file
// descriptors (or any other accept error) only pauses it.
func (s *Server) Serve() {
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.done:
			return
		}
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			<-s.slots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("control socket: accept", "error", err.Error())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go func() {
			defer func() { <-s.slots }()
			s.handle(conn)
		}()
	}
}

// Close removes the control socket, unless its path names another file by
// now (see Removed): that one is not the server's to remove. Connections
// being served end by themselves, within the per-connection timeout.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	if s.gone() {
		s.ln.SetUnlinkOnClose(false)
	}
	return s.ln.Close()
}

func (s *Server) handle(conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(s.timeout))
	req, err := readRequest(conn)
	if errors.Is(err, errTooLarge) {
		s.log.Warn("control socket: request refused", "error", err.Error())
		json.NewEncoder(conn).Encode(response{Error: err.Error()})
		return // closing leaves the rest unread
	}
	if err != nil {
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
		if st.Owner == status.OwnerRun {
			// Stopping one interface of the appliance would stop it
			// whole (it is all or nothing), by surprise.
			resp.Error = fmt.Sprintf("%s belongs to 'faithif run' (pid %d): stop that, or remove the interface from its configuration and restart it", st.Name, st.PID)
			break
		}
		resp.Status = &st
		defer s.c.Destroy(req.Grace) // after the answer is written
	case "reload":
		if req.Access != "" && !filepath.IsAbs(req.Access) {
			resp.Error = fmt.Sprintf("access file %q: not an absolute path", req.Access)
			break
		}
		if st := s.c.Status(); req.Access != "" && st.Owner == status.OwnerRun {
			// The appliance's access files are named in its
			// configuration; a restart would quietly go back to it.
			resp.Error = fmt.Sprintf("%s belongs to 'faithif run' (pid %d): its access file is the rules key in its configuration; change that and send SIGHUP (or faithif reload %s)", st.Name, st.PID, st.Name)
			break
		}
		if err := s.c.Reload(req.Access); err != nil {
			resp.Error = err.Error()
			break
		}
		st := s.c.Status()
		resp.Status = &st
	case "flows":
		f, err := parseFilter(req.Client, req.Dest)
		if err != nil {
			resp.Error = err.Error()
			break
		}
		t := s.c.Flows(f)
		resp.Flows = &t
	default:
		resp.Error = fmt.Sprintf("unknown operation %q", req.Op)
	}
	json.NewEncoder(conn).Encode(resp)
}

// Client talks to a running instance through its control socket.
type Client struct {
	Path string
}

// call sends req and returns the status in the answer.
func (c Client) call(ctx context.Context, req request) (*status.Status, error) {
	resp, err := c.exchange(ctx, req, maxAnswer)
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("empty answer from %s", c.Path)
	}
	return resp.Status, nil
}

// exchange sends req and reads the answer, at most limit bytes of it; an
// answer with an error is that error.
func (c Client) exchange(ctx context.Context, req request, limit int64) (*response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", c.Path, err)
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(conn, limit)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", c.Path, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return &resp, nil
}

// dial connects to the control socket, once the run directory and the
// socket are found trustworthy (owned by root or by this user, writable by
// no one else: faithif.RunDir), and checks that the process answering runs
// as root or as this user (SO_PEERCRED), so that a socket planted by
// someone else is never believed.
func (c Client) dial(ctx context.Context) (*net.UnixConn, error) {
	notRunning := fmt.Errorf("%w (no answer on %s)", ErrNotRunning, c.Path)
	err := faithif.RunDir(filepath.Dir(c.Path)).Check()
	if errors.Is(err, os.ErrNotExist) {
		return nil, notRunning
	}
	if err != nil {
		return nil, err // it names the run directory and what is wrong
	}
	fi, err := os.Lstat(c.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, notRunning
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err) // lstat PATH: ...
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s is not a socket (%s): not trusting it", c.Path, fi.Mode().Type())
	}
	if err := faithif.CheckTrusted(c.Path, fi); err != nil {
		return nil, fmt.Errorf("control socket %w: not trusting it", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, notRunning
		}
		return nil, fmt.Errorf("control socket: %w", err) // dial unix PATH: ...
	}
	conn := nc.(*net.UnixConn)
	if err := checkPeer(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("control socket %s: %w: not trusting it", c.Path, err)
	}
	return conn, nil
}

// checkPeer returns nil if the process at the other end of conn runs as
// root or as this process's effective user.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if !faithif.TrustedUID(cred.Uid) {
		return fmt.Errorf("answered by pid %d running as uid %d, not by %s", cred.Pid, cred.Uid, faithif.TrustedUsers())
	}
	return nil
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

// ReloadFrom asks the instance to switch to the access file path (absolute)
// and returns its status after; on error it keeps its rules and file.
func (c Client) ReloadFrom(ctx context.Context, path string) (*status.Status, error) {
	return c.call(ctx, request{Op: "reload", Access: path})
}

// Flows asks the instance for the flows it is setting up or relaying that
// f selects, sorted.
func (c Client) Flows(ctx context.Context, f flows.Filter) (*flows.Table, error) {
	resp, err := c.exchange(ctx, request{Op: "flows", Client: f.Client.String(), Dest: f.Dest.String()}, maxFlowsAnswer)
	if err != nil {
		return nil, err
	}
	if resp.Flows == nil {
		return nil, fmt.Errorf("empty answer from %s", c.Path)
	}
	if resp.Flows.SchemaVersion != flows.SchemaVersion {
		return nil, fmt.Errorf("answer from %s: flows schema_version %d, want %d", c.Path, resp.Flows.SchemaVersion, flows.SchemaVersion)
	}
	return resp.Flows, nil
}

// parseFilter reads a request's filter.
func parseFilter(client, dest string) (flows.Filter, error) {
	var f flows.Filter
	var err error
	if f.Client, err = flows.ParseClient(client); err != nil {
		return f, fmt.Errorf("client filter %w", err)
	}
	if f.Dest, err = flows.ParseDest(dest); err != nil {
		return f, fmt.Errorf("destination filter %w", err)
	}
	return f, nil
}

// SetKeepFaith stores the keepfaith value in dir (its network
// namespace's), so that interfaces created later start with it, and
// applies it to every instance running there.
func SetKeepFaith(ctx context.Context, dir faithif.RunDir, on bool) error {
	if err := dir.SetKeepFaith(on); err != nil {
		return err // "set net.inet6.ip6.keepfaith: ..."
	}
	names, err := dir.Instances()
	if err != nil {
		return fmt.Errorf("set %s: %w", faithif.KeepFaithName, err)
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
// skipped. A run directory faithif cannot trust is an error.
func Statuses(ctx context.Context, dir faithif.RunDir) ([]*status.Status, error) {
	all := []*status.Status{}
	if err := dir.Check(); errors.Is(err, os.ErrNotExist) {
		return all, nil
	} else if err != nil {
		return nil, err // it names the run directory and what is wrong
	}
	names, err := dir.Instances()
	if err != nil {
		return nil, err // "run directory D: list the running interfaces: ..."
	}
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

// AllFlows asks every instance running in dir for its flows that f
// selects, and returns them in one table, sorted (by interface first); a
// socket nobody answers on (left by a crashed instance) is skipped. A run
// directory faithif cannot trust is an error.
func AllFlows(ctx context.Context, dir faithif.RunDir, f flows.Filter) (*flows.Table, error) {
	all := &flows.Table{SchemaVersion: flows.SchemaVersion, Flows: []flows.Flow{}}
	if err := dir.Check(); errors.Is(err, os.ErrNotExist) {
		return all, nil
	} else if err != nil {
		return nil, err // it names the run directory and what is wrong
	}
	names, err := dir.Instances()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t, err := Client{Path: dir.SocketPath(n)}.Flows(cctx, f)
		cancel()
		if errors.Is(err, ErrNotRunning) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		all.Flows = append(all.Flows, t.Flows...)
	}
	flows.Sort(all.Flows)
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
