package flows

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Header is the first line of WriteText, its columns' names.
const Header = "INTERFACE\tCLIENT\tDST6\tSRC4\tDST4\tSTATE\tAGE\tIDLE\tCLIENT->SERVER\tSERVER->CLIENT"

// WriteText prints the table as `faithif flows` does: a heading, then one
// line per flow, in aligned columns: the interface, the client's address
// and port and the FAITH address and port it connected to, the IPv4
// connection's own address and port ("-" while in its handshake) and the
// server's, the state, the age and idle time (rounded), and the payload
// bytes each way.
func (t *Table) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, Header)
	for i := range t.Flows {
		f := &t.Flows[i]
		src4 := "-"
		if f.Src4.IsValid() {
			src4 = f.Src4.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", f.Interface, f.Client, f.Dst6, src4, f.Dst4,
			f.State, Duration(f.AgeSeconds), Duration(f.IdleSeconds), f.BytesClientToServer, f.BytesServerToClient)
	}
	return tw.Flush()
}

// Duration prints seconds for a person: to the millisecond below a second,
// to the second above (350ms, 12s, 1h2m3s).
func Duration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
