package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/faithif/status"
)

// fuzzController is a Controller that does nothing.
type fuzzController struct{}

func (fuzzController) Status() status.Status { return status.Status{Name: "faith0"} }
func (fuzzController) SetKeepFaith(bool)     {}
func (fuzzController) Destroy(time.Duration) {}
func (fuzzController) Reload(string) error   { return nil }
func (fuzzController) Flows(f flows.Filter) flows.Table {
	return flows.Build("faith0", manyFlows(3), f)
}

// FuzzControlRequest writes arbitrary bytes as a request to a live control
// socket and checks that the server answers with exactly one JSON response,
// holding a status, flows or an error (exactly one of them), and still
// answers a status request afterwards.
//
// `make fuzz` runs it for FUZZTIME; `go test` runs the seeds below.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"status"}`, `{"op":"keepfaith","keepfaith":true}`, `{"op":"destroy","grace":1000000000}`,
		`{"op":"reload"}`, `{"op":"flows"}`, `{"op":"flows","client":"2001:db8::/32","dest":":80"}`,
		`{"op":"flows","client":"192.0.2.1"}`, `{"op":"flows","dest":"[::1"}`, `{"op":"nope"}`, ``, `{`, `[]`, `null`, `"status"`, `{"op":1}`,
		`{"op":"status"}{"op":"destroy"}`, `{"op":"status","grace":-1}`, `{"op":"status","op":"reload"}`,
		`{"op":"status","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		strings.Repeat(" ", MaxRequest-10) + `{"op":"status"}`,
		`{"op":"status","pad":"` + strings.Repeat("A", MaxRequest) + `"}`,
		"\x00\xff\xfe{\"op\":\"status\"}",
	} {
		f.Add([]byte(s))
	}
	d := faithif.RunDir(f.TempDir())
	path := d.SocketPath("faith0")
	srv, err := Listen(path, fuzzController{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	f.Cleanup(func() {
		srv.Close()
		<-served
	})

	f.Fuzz(func(t *testing.T, req []byte) {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The server may stop reading (and close) before the request is
		// all written: write beside the read.
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			conn.Write(req)
			conn.CloseWrite()
		}()
		answer, err := io.ReadAll(io.LimitReader(conn, maxAnswer))
		<-wrote
		// The server answers as soon as it has read a request, or found it
		// bad or over MaxRequest, and closes the connection with the rest
		// unread, which resets a Unix socket: the answer is read first.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the answer to %d bytes: %v (after %q)", len(req), err, answer)
		}
		var resp struct {
			Status *json.RawMessage `json:"status"`
			Flows  *json.RawMessage `json:"flows"`
			Error  string           `json:"error"`
		}
		dec := json.NewDecoder(bytes.NewReader(answer))
		if err := dec.Decode(&resp); err != nil {
			t.Fatalf("answer %q is not one JSON response: %v", answer, err)
		}
		if dec.More() {
			t.Fatalf("answer %q holds more than one response", answer)
		}
		if n := btoi(resp.Status != nil) + btoi(resp.Flows != nil) + btoi(resp.Error != ""); n != 1 {
			t.Fatalf("answer %q: want a status, flows or an error", answer)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := (Client{Path: path}).Status(ctx); err != nil {
			t.Fatalf("after request %q the server no longer answers: %v", req, err)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
