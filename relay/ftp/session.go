package ftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay"
)

// maxLine is the longest command line (vsftpd reads at most 4 KiB); a
// longer one is refused.
const maxLine = 8 << 10

// maxReply bounds a reply line, and a reply the relay must read whole to
// translate (a 227 answering EPSV or LPSV; one line in practice): a server
// that sends more fails the session.
const maxReply = 64 << 10

// maxRefusalLogs is how many refusals one session logs; the counters
// count them all.
const maxRefusalLogs = 4

// kind says what a command sent to the server needs of its reply.
type kind int

const (
	kindPlain kind = iota // passed on as it comes
	kindEPSV              // PASV sent for EPSV: 227 becomes 229
	kindLPSV              // PASV sent for LPSV: 227 becomes 228
	kindPORT              // PORT sent for EPRT or LPRT: a failure closes its listener
	kindAuth              // AUTH: 234 turns the connection to TLS
	kindLocal             // a reply of the relay's own, written in its turn
)

// pending is a command waiting for its reply, in order: the server answers
// commands in the order they came, each with one final reply (2xx to 5xx),
// maybe after preliminary ones (1xx).
type pending struct {
	kind  kind
	text  string     // kindLocal: the reply
	data  *dataSetup // kindPORT: the active listener
	authC chan bool  // kindAuth: told whether the reply was 234
}

// session is one FTP control connection.
type session struct {
	r   *Relay
	f   *relay.AppFlow
	log *slog.Logger

	ctx    context.Context // ends with the session, or when it fails
	cancel context.CancelFunc

	cr, sr *bufio.Reader // client's commands, server's replies

	// wmu orders the writes to the client (replies of the server and the
	// relay's own); it is taken before mu.
	wmu sync.Mutex
	// mu guards what follows.
	mu       sync.Mutex
	pending  []pending
	data     *dataSetup // the data connection set up last, until used
	epsvAll  bool
	plain    bool // AUTH TLS: the rest is relayed as plain bytes
	logsLeft int  // refusals still to log

	dataWG     sync.WaitGroup // the data connections' goroutines
	dataActive atomic.Int32   // data connections being relayed
	lastActive atomic.Int64   // when anything last moved, Unix nanoseconds

	// serverDone is closed when the server's direction has ended (its
	// FIN, or an error): no reply comes any more.
	serverDone chan struct{}

	failOnce sync.Once
	end      relay.End
	err      error
}

func newSession(ctx context.Context, r *Relay, f *relay.AppFlow) *session {
	s := &session{
		r: r, f: f, log: f.Log.With("app", "ftp"),
		cr:         bufio.NewReaderSize(f.Client, maxLine),
		sr:         bufio.NewReaderSize(f.Server, maxLine),
		pending:    []pending{{kind: kindPlain}}, // the greeting
		logsLeft:   maxRefusalLogs,
		end:        relay.EndClosed,
		serverDone: make(chan struct{}),
	}
	// The data connections end with the relay (ctx), or when the session
	// fails.
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.touch()
	return s
}

// run relays the control connection both ways until both are over, or the
// session fails, or AUTH TLS hands it back to the relay (relay.ErrPlain).
func (s *session) run() (relay.End, error) {
	defer s.cancel()
	stop := context.AfterFunc(s.ctx, func() { s.fail(relay.EndShutdown, context.Cause(s.ctx)) })
	defer stop()
	var idle *time.Timer
	if d := s.f.IdleTimeout; d > 0 {
		idle = s.idleTimer(d)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.fromClient() }()
	go func() { defer wg.Done(); defer close(s.serverDone); s.fromServer() }()
	wg.Wait()
	if idle != nil {
		idle.Stop()
	}
	s.closeData()
	s.mu.Lock()
	plain := s.plain
	s.mu.Unlock()
	if plain && s.ctx.Err() == nil {
		return s.handBack()
	}
	if s.ctx.Err() == nil {
		s.f.Client.Close()
		s.f.Server.Close()
	}
	// A transfer under way ends as its data connection does (or with the
	// relay, which resets it).
	s.dataWG.Wait()
	s.seal()
	return s.end, s.err
}

// seal decides the session's end: no fail changes it, or touches the
// control connections, any more. It reports whether the session failed.
func (s *session) seal() (failed bool) {
	sealed := false
	s.failOnce.Do(func() { sealed = true })
	return !sealed
}

// handBack ends the session after AUTH TLS: what was read past the 234
// reply and the AUTH command goes on, the data connections end, and the
// relay copies the rest as plain bytes.
func (s *session) handBack() (relay.End, error) {
	s.r.stats.tls.Add(1)
	s.log.Info("ftp: AUTH TLS: the control connection is encrypted from here on and relayed as plain bytes; data commands can no longer be translated (EPRT fails, EPSV works only where the server answers it itself)")
	if err := s.passOn(s.cr, s.f.Server); err != nil {
		s.fail(relay.EndServerReset, err)
	}
	if err := s.passOn(s.sr, s.f.Client); err != nil {
		s.fail(relay.EndClientReset, err)
	}
	s.dataWG.Wait()
	if s.seal() {
		return s.end, s.err
	}
	return relay.EndClosed, relay.ErrPlain
}

// passOn writes what r holds already to w.
func (s *session) passOn(r *bufio.Reader, w io.Writer) error {
	if n := r.Buffered(); n > 0 {
		b, _ := r.Peek(n)
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// fail ends the session abnormally, once: both control connections are
// reset, and so are its data connections (their context ends).
func (s *session) fail(end relay.End, err error) {
	s.failOnce.Do(func() {
		s.end, s.err = end, err
		s.f.Client.Abort()
		s.f.Server.Abort()
		s.cancel()
	})
}

// touch records activity.
func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// idleTimer resets the session once nothing has moved on the control
// connection for d and no data connection is being relayed: a long
// transfer keeps its control connection, idle meanwhile, alive.
func (s *session) idleTimer(d time.Duration) *time.Timer {
	var t *time.Timer
	t = time.AfterFunc(time.Duration(1<<62), func() {
		quiet := time.Since(time.Unix(0, s.lastActive.Load()))
		switch {
		case s.dataActive.Load() > 0:
			t.Reset(d)
		case quiet >= d:
			s.fail(relay.EndIdleTimeout, errIdle)
		default:
			t.Reset(max(d-quiet, 10*time.Millisecond))
		}
	})
	t.Reset(d) // after t is assigned, so that the callback sees it
	return t
}

// fromClient reads the client's commands, line by line, and passes them
// on, translated where they carry IPv6, or answers them itself.
func (s *session) fromClient() {
	for {
		line, err := s.cr.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			s.touch()
			if err := s.skipLine(); err != nil {
				s.clientErr(err)
				return
			}
			s.refuse(fmt.Sprintf("500 Command line too long (over %d bytes).\r\n", maxLine))
			continue
		case err == nil:
			s.touch()
			if !s.command(line) {
				return
			}
			continue
		}
		// EOF or an error: a last line without its end goes on as it is.
		if len(line) > 0 {
			if _, werr := s.f.Server.Write(line); werr != nil {
				s.fail(relay.EndServerReset, werr)
				return
			}
		}
		s.clientErr(err)
		return
	}
}

// clientErr ends the client's direction: its FIN is a half-close of the
// server's connection, anything else fails the session.
func (s *session) clientErr(err error) {
	if errors.Is(err, io.EOF) {
		if err := s.f.Server.CloseWrite(); err != nil {
			s.fail(relay.EndServerReset, err)
		}
		return
	}
	s.fail(relay.EndClientReset, err)
}

// skipLine reads up to the end of an overlong command line.
func (s *session) skipLine() error {
	for {
		_, err := s.cr.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// command handles one command line and reports whether to read on.
func (s *session) command(line []byte) bool {
	cmd := parseCommand(line)
	s.mu.Lock()
	epsvAll := s.epsvAll
	s.mu.Unlock()
	switch cmd.verb {
	case "EPSV":
		switch strings.ToUpper(cmd.arg) {
		case "ALL":
			s.mu.Lock()
			s.epsvAll = true
			s.mu.Unlock()
			s.local("200 EPSV ALL command successful.\r\n")
			return true
		case "", "2":
			return s.send(pending{kind: kindEPSV}, "PASV\r\n", true)
		case "1":
			s.refuse("522 Network protocol not supported, use (2).\r\n")
			return true
		}
		s.refuse("501 Syntax error in EPSV's argument (want 2 or ALL).\r\n")
		return true
	case "LPSV":
		if epsvAll {
			s.refuse("503 EPSV ALL is in force: only EPSV sets up a data connection.\r\n")
			return true
		}
		return s.send(pending{kind: kindLPSV}, "PASV\r\n", true)
	case "EPRT", "LPRT":
		if epsvAll {
			s.refuse("503 EPSV ALL is in force: only EPSV sets up a data connection.\r\n")
			return true
		}
		parse := parseEPRT
		if cmd.verb == "LPRT" {
			parse = parseLPRT
		}
		to, err := parse(cmd.arg)
		switch {
		case errors.Is(err, errProtocol) && cmd.verb == "EPRT":
			s.refuse("522 Network protocol not supported, use (2).\r\n")
			return true
		case errors.Is(err, errProtocol):
			s.refuse("521 Supported address families are (6).\r\n")
			return true
		case err != nil:
			s.refuse(fmt.Sprintf("501 Syntax error in %s's argument.\r\n", cmd.verb))
			return true
		}
		return s.active(cmd.verb, to)
	case "PORT":
		s.refuse("502 PORT cannot carry an IPv6 address: use EPRT (this IPv6 session is relayed to an IPv4 server).\r\n")
		return true
	case "PASV":
		s.refuse("502 PASV cannot carry an IPv6 address: use EPSV (this IPv6 session is relayed to an IPv4 server).\r\n")
		return true
	case "AUTH":
		return s.auth(line)
	}
	return s.send(pending{kind: kindPlain}, string(line), false)
}

// send queues p for the reply and sends the command line to the server;
// translated says it is the relay's translation of the client's.
func (s *session) send(p pending, line string, translated bool) bool {
	s.mu.Lock()
	s.pending = append(s.pending, p)
	s.mu.Unlock()
	if translated {
		s.r.stats.translated.Add(1)
		s.log.Debug("ftp: command translated", "to", strings.TrimSpace(line))
	}
	if _, err := io.WriteString(s.f.Server, line); err != nil {
		s.fail(relay.EndServerReset, err)
		return false
	}
	return true
}

// auth sends AUTH on and waits for its reply: after 234 the connection is
// TLS, which the relay cannot read, so it stops reading commands.
func (s *session) auth(line []byte) bool {
	ch := make(chan bool, 1)
	if !s.send(pending{kind: kindAuth, authC: ch}, string(line), false) {
		return false
	}
	select {
	case tls := <-ch:
		return !tls
	case <-s.serverDone:
		// The server closed without a reply: no TLS, and the client's
		// FIN or RST, answering the server's FIN passed on, is read as
		// any other time.
		select {
		case tls := <-ch:
			return !tls
		default:
			return true
		}
	case <-s.ctx.Done():
		return false
	}
}

// refuse answers a command with the relay's own 5xx, counted and logged.
func (s *session) refuse(reply string) {
	s.r.stats.refused.Add(1)
	s.logRefusal("ftp: command refused", "reply", strings.TrimSpace(reply))
	s.local(reply)
}

// logRefusal logs a refusal, the session's first few only.
func (s *session) logRefusal(msg string, attrs ...any) {
	s.mu.Lock()
	ok := s.logsLeft > 0
	s.logsLeft--
	s.mu.Unlock()
	if ok {
		s.log.Info(msg, attrs...)
	}
}

// local writes a reply of the relay's own in its turn: now, if no reply
// of the server's is awaited, else after those.
func (s *session) local(reply string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if len(s.pending) > 0 {
		s.pending = append(s.pending, pending{kind: kindLocal, text: reply})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.toClient([]byte(reply))
}

// toClient writes to the client; s.wmu is held.
func (s *session) toClient(b []byte) bool {
	if _, err := s.f.Client.Write(b); err != nil {
		s.fail(relay.EndClientReset, err)
		return false
	}
	return true
}

// fromServer reads the server's replies and passes them on, translated
// where they answer a translated command.
func (s *session) fromServer() {
	var (
		multi   int    // the code of the multi-line reply being read, 0 if none
		held    []byte // its lines so far, when it must be read whole
		holding bool
		// dropping: the transfer failed on the client's side, the relay
		// answered it; the server's lines are dropped up to its final
		// reply, which is dropped too.
		dropping bool
	)
	for {
		line, err := s.replyLine()
		if len(line) > 0 {
			s.touch()
		}
		if err != nil {
			if len(line) > 0 {
				s.wmu.Lock()
				ok := s.toClient(line)
				s.wmu.Unlock()
				if !ok {
					return
				}
			}
			s.serverErr(err)
			return
		}
		code, more, isReply := replyCode(line)
		if isReply && multi == 0 && code < 200 {
			switch s.holdPreliminary() {
			case holdStop:
				return
			case holdFailed:
				// The client gets the relay's 425 for the transfer, and
				// nothing of the server's reply to it (its 150, then 425
				// or 426 as its data connection was reset).
				s.wmu.Lock()
				ok := s.toClient([]byte("425 Can't open data connection: the relay could not connect to your EPRT address.\r\n"))
				s.wmu.Unlock()
				if !ok {
					return
				}
				dropping = true
			}
		}
		switch {
		case !isReply || (multi != 0 && (code != multi || more)):
			// Inside a reply, or text outside any.
		case multi == 0 && more:
			multi = code
			s.mu.Lock()
			holding = len(s.pending) > 0 && (s.pending[0].kind == kindEPSV || s.pending[0].kind == kindLPSV) && code >= 200
			s.mu.Unlock()
		default: // the last line of a reply
			multi = 0
			reply := line
			if holding {
				reply = append(held, line...)
				held, holding = nil, false
			}
			if !s.reply(code, reply, dropping) {
				return
			}
			if code >= 200 {
				dropping = false
			}
			continue
		}
		if dropping {
			continue
		}
		if holding {
			if len(held)+len(line) > maxReply {
				s.fail(relay.EndServerReset, fmt.Errorf("reply %d longer than %d bytes", multi, maxReply))
				return
			}
			held = append(held, line...)
			continue
		}
		s.wmu.Lock()
		ok := s.toClient(line)
		s.wmu.Unlock()
		if !ok {
			return
		}
	}
}

// What holdPreliminary found.
const (
	holdPass   = iota // pass the reply on
	holdFailed        // the active data connection to the client failed
	holdStop          // the session is over
)

// holdPreliminary waits, before a preliminary reply (150, 125) goes to
// the client, until the active data connection set up last, if any, has
// reached the client (or failed, or was never made). vsftpd connects to
// the relay, then sends 150, the data and 226 at once: passed on
// straight away they would reach the client before the relay's
// connection to it, and curl, waiting for its data connection, fails on
// a reply it did not expect yet ("Ctrl conn has data while waiting for
// data conn").
func (s *session) holdPreliminary() int {
	s.mu.Lock()
	d := s.data
	s.mu.Unlock()
	if d == nil || d.ready == nil {
		return holdPass
	}
	select {
	case <-d.ready:
	case <-s.ctx.Done():
		return holdStop
	}
	if d.failed.Swap(false) {
		return holdFailed
	}
	return holdPass
}

// replyLine reads one line of the server's, whole: valid until the next
// read. A line over maxReply is an error.
func (s *session) replyLine() ([]byte, error) {
	line, err := s.sr.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	long := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = s.sr.ReadSlice('\n')
		long = append(long, line...)
		if len(long) > maxReply {
			return nil, fmt.Errorf("a reply line longer than %d bytes", maxReply)
		}
	}
	return long, err
}

// serverErr ends the server's direction: its FIN is a half-close of the
// client's connection, anything else fails the session.
func (s *session) serverErr(err error) {
	if errors.Is(err, io.EOF) {
		if err := s.f.Client.CloseWrite(); err != nil {
			s.fail(relay.EndClientReset, err)
		}
		return
	}
	s.fail(relay.EndServerReset, err)
}

// reply handles a whole reply (or the last line of one passed on line by
// line) with its code, and the relay's replies queued behind it; it
// reports whether to read on.
func (s *session) reply(code int, reply []byte, drop bool) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var p pending
	s.mu.Lock()
	if code >= 200 && len(s.pending) > 0 {
		p = s.pending[0]
		s.pending = s.pending[1:]
	}
	s.mu.Unlock()
	out := reply
	readOn := true
	switch p.kind {
	case kindEPSV, kindLPSV:
		if code == 227 {
			out = []byte(s.passive(p.kind, string(reply)))
		}
	case kindPORT:
		if code >= 300 {
			p.data.close()
		}
	case kindAuth:
		tls := code == 234
		if tls {
			s.mu.Lock()
			s.plain = true
			s.mu.Unlock()
			readOn = false
		}
		defer func() { p.authC <- tls }() // once the reply is out
	}
	if drop {
		out = nil
	}
	if len(out) > 0 && !s.toClient(out) {
		return false
	}
	for {
		s.mu.Lock()
		if len(s.pending) == 0 || s.pending[0].kind != kindLocal {
			s.mu.Unlock()
			return readOn
		}
		text := s.pending[0].text
		s.pending = s.pending[1:]
		s.mu.Unlock()
		if !s.toClient([]byte(text)) {
			return false
		}
	}
}

// dataSetup is one data connection announced and not yet made: a claim on
// the FAITH address (passive) or a kernel listener on the relay's IPv4
// address (active).
type dataSetup struct {
	closeOnce sync.Once
	closeFn   func()

	// Active only: ready is closed once the setup is over, with the
	// connection to the client made, failed (failed set first), or never
	// asked for (the listener closed unused); the server's preliminary
	// reply (150) to its transfer waits for it (holdPreliminary).
	ready     chan struct{}
	readyOnce sync.Once
	failed    atomic.Bool
}

// done ends an active setup: failed says the connection to the client
// could not be made.
func (d *dataSetup) done(failed bool) {
	if failed {
		d.failed.Store(true)
	}
	d.readyOnce.Do(func() { close(d.ready) })
}

// close closes the setup's listener, once.
func (d *dataSetup) close() {
	if d == nil {
		return
	}
	d.closeOnce.Do(d.closeFn)
}

// setData makes d the session's data setup; the one before, if still
// unused, is closed: as on a server, the last PASV or PORT is the one
// that counts.
func (s *session) setData(d *dataSetup) {
	s.mu.Lock()
	old := s.data
	s.data = d
	s.mu.Unlock()
	old.close()
}

// closeData closes the session's data setup, if any.
func (s *session) closeData() {
	s.mu.Lock()
	d := s.data
	s.data = nil
	s.mu.Unlock()
	d.close()
}

// isTimeout reports a deadline's error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
