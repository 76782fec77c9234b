package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/faithif/flows"
)

const flowsUsage = `usage: faithif flows [faithN] [--client C] [--dest D] [--json]

Lists the flows of one running instance, or of all of them: each flow being
set up (handshake: permitted, its IPv4 connection or its client's handshake
under way) or relayed, one line each, sorted by interface, client address,
client port and destination:

  CLIENT -> DST6     the IPv6 client and the FAITH address it connected to
  SRC4 -> DST4       the IPv4 connection's own end ("-" in handshake) and the server
  STATE              handshake, established, half_closed_by_client (the client
                     sent FIN), half_closed_by_server, closing, draining
  AGE, IDLE          since the SYN, since data last moved either way
  CLIENT->SERVER, SERVER->CLIENT   payload bytes relayed each way

C is an IPv6 address or prefix with an optional port or range
(2001:db8:1::/64, [2001:db8:1::2]:40000); D an IPv4 one, matched against
the server (192.0.2.2, 192.0.2.0/24:80-443), or an IPv6 one, matched
against the FAITH address (2001:db8:46::/96, [2001:db8:46::c000:202]:443);
":PORT" alone matches the port.

Flags:
`

func cmdFlows(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("flows", flowsUsage, stderr)
	asJSON := fs.Bool("json", false, "print JSON: {\"schema_version\": 1, \"flows\": [...]}")
	client, dest := new(string), new(string)
	fs.Var(onceString{client}, "client", "only flows from this IPv6 client address or prefix[:port] (once)")
	fs.Var(onceString{dest}, "dest", "only flows to this IPv4 server or IPv6 FAITH address or prefix[:port] (once)")
	name, err := parseWithName(fs, args, false)
	if err != nil {
		return err
	}
	var f flows.Filter
	if f.Client, err = flows.ParseClient(*client); err != nil {
		return usagef("--client %v", err)
	}
	if f.Dest, err = flows.ParseDest(*dest); err != nil {
		return usagef("--dest %v", err)
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("flows: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var t *flows.Table
	if name == "" {
		t, err = control.AllFlows(ctx, runDir, f)
	} else if t, err = (control.Client{Path: runDir.SocketPath(name)}).Flows(ctx, f); err != nil {
		err = fmt.Errorf("%s: %w", name, err)
	}
	if err != nil {
		return fmt.Errorf("flows: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	}
	return t.WriteText(stdout)
}

// onceString is a string flag that may be given once: a second value is an
// error rather than quietly replacing the first.
type onceString struct{ v *string }

// String implements flag.Value.
func (o onceString) String() string {
	if o.v == nil {
		return ""
	}
	return *o.v
}

// Set implements flag.Value.
func (o onceString) Set(s string) error {
	if *o.v != "" {
		return fmt.Errorf("given twice (%s and %s): give one", *o.v, s)
	}
	*o.v = s
	return nil
}
