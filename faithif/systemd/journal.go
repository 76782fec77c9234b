package systemd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// Priorities, as syslog(3) numbers them and sd-daemon(3) writes them at the
// start of a line.
const (
	prioErr     = "<3>"
	prioWarning = "<4>"
	prioInfo    = "<6>"
	prioDebug   = "<7>"
)

// Journal is a standard error that journald reads: every line written
// through it starts with its priority, "<N>", which journald strips and
// records as the entry's PRIORITY= (sd-daemon(3)). Safe for concurrent use.
type Journal struct {
	mu  sync.Mutex
	w   io.Writer
	mid bool // the last write ended inside a line
	buf bytes.Buffer
}

// JournalStderr returns os.Stderr as a Journal if it is connected to the
// journal, that is if $JOURNAL_STREAM names its device and inode, as
// systemd sets it for a service whose output goes to the journal (a
// redirected standard error keeps the variable but not the inode); nil
// otherwise.
func JournalStderr() *Journal {
	if ok, err := journal.StderrIsJournalStream(); err != nil || !ok {
		return nil
	}
	return NewJournal(os.Stderr)
}

// NewJournal returns a Journal writing to w.
func NewJournal(w io.Writer) *Journal { return &Journal{w: w} }

// Write implements io.Writer: the lines of p get priority error (3). It is
// for what a command prints itself (its errors and its usage); log records
// go through Handler.
func (j *Journal) Write(p []byte) (int, error) { return j.write(prioErr, p) }

// write writes p with prio at the start of each of its lines, in one write
// to the underlying writer.
func (j *Journal) write(prio string, p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	for rest := p; len(rest) > 0; {
		if !j.mid {
			j.buf.WriteString(prio)
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		j.buf.Write(line)
		rest = rest[len(line):]
		j.mid = line[len(line)-1] != '\n'
	}
	if _, err := j.w.Write(j.buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Handler returns a log handler that writes each record as the handler
// newHandler returns for a writer would, on a line that starts with the
// record's priority: debug 7, info 6, warn 4, error 3. newHandler is
// called once for each priority, each with its own writer.
func (j *Journal) Handler(newHandler func(w io.Writer) slog.Handler) slog.Handler {
	return &priorityHandler{
		debug: newHandler(prioWriter{j, prioDebug}),
		info:  newHandler(prioWriter{j, prioInfo}),
		warn:  newHandler(prioWriter{j, prioWarning}),
		err:   newHandler(prioWriter{j, prioErr}),
	}
}

// prioWriter writes to a Journal with one priority.
type prioWriter struct {
	j    *Journal
	prio string
}

// Write implements io.Writer.
func (w prioWriter) Write(p []byte) (int, error) { return w.j.write(w.prio, p) }

// priorityHandler hands each record to the handler of its priority.
type priorityHandler struct {
	debug, info, warn, err slog.Handler
}

func (h *priorityHandler) pick(l slog.Level) slog.Handler {
	switch {
	case l < slog.LevelInfo:
		return h.debug
	case l < slog.LevelWarn:
		return h.info
	case l < slog.LevelError:
		return h.warn
	}
	return h.err
}

// Enabled implements slog.Handler.
func (h *priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.pick(l).Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.pick(r.Level).Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *priorityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &priorityHandler{h.debug.WithAttrs(as), h.info.WithAttrs(as), h.warn.WithAttrs(as), h.err.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *priorityHandler) WithGroup(name string) slog.Handler {
	return &priorityHandler{h.debug.WithGroup(name), h.info.WithGroup(name), h.warn.WithGroup(name), h.err.WithGroup(name)}
}
