package systemd

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

// noTime drops the time, as faithif does under journald.
func noTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestJournalHandler: each record's line starts with its priority, in text
// and JSON, with attributes and groups added before; records below the
// level are not written.
func TestJournalHandler(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: noTime}
			log := slog.New(NewJournal(&out).Handler(func(w io.Writer) slog.Handler {
				if format == "json" {
					return slog.NewJSONHandler(w, opts)
				}
				return slog.NewTextHandler(w, opts)
			}))
			log = log.With("interface", "faith0")
			log.Debug("syn")
			log.Info("ready")
			log.Warn("no access rules")
			log.WithGroup("flow").Error("dial failed", "to", "192.0.2.1:80")
			log.Log(nil, slog.LevelError+4, "worse")
			log.Log(nil, slog.LevelDebug-4, "finer") // below the level

			want := map[string][]string{
				"text": {
					`<7>level=DEBUG msg=syn interface=faith0`,
					`<6>level=INFO msg=ready interface=faith0`,
					`<4>level=WARN msg="no access rules" interface=faith0`,
					`<3>level=ERROR msg="dial failed" interface=faith0 flow.to=192.0.2.1:80`,
					`<3>level=ERROR+4 msg=worse interface=faith0`,
				},
				"json": {
					`<7>{"level":"DEBUG","msg":"syn","interface":"faith0"}`,
					`<6>{"level":"INFO","msg":"ready","interface":"faith0"}`,
					`<4>{"level":"WARN","msg":"no access rules","interface":"faith0"}`,
					`<3>{"level":"ERROR","msg":"dial failed","interface":"faith0","flow":{"to":"192.0.2.1:80"}}`,
					`<3>{"level":"ERROR+4","msg":"worse","interface":"faith0"}`,
				},
			}[format]
			if got := out.String(); got != strings.Join(want, "\n")+"\n" {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
		})
	}
}

// TestJournalWrite: what is written directly (a command's errors and
// usage) is priority 3 on every line, however the lines are split across
// writes.
func TestJournalWrite(t *testing.T) {
	var out bytes.Buffer
	j := NewJournal(&out)
	fmt.Fprint(j, "faithif: --mtu: mtu 100: must be between 1280 and 65535\nfaithif: --grace: ")
	fmt.Fprint(j, "bad\n")
	fmt.Fprint(j, "")
	fmt.Fprint(j, "Run 'faithif create --help' for usage.\n\n")
	want := "<3>faithif: --mtu: mtu 100: must be between 1280 and 65535\n<3>faithif: --grace: bad\n<3>Run 'faithif create --help' for usage.\n<3>\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// TestJournalStderr: standard error is the journal's only if
// JOURNAL_STREAM names its device and inode.
func TestJournalStderr(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"garbage", false},
	} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := JournalStderr() != nil; got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: journal %v, want %v", tc.env, got, tc.want)
		}
	}
}
