package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/faithif/faithif/faithif"
)

const healthUsage = `usage: faithif health [faithN]

Exits 0 if faithN relays (running, not draining, keepfaith 1, link up), or
without a name if every interface running here does and there is at least
one; else exits 1 and says why on stderr. For health checks that have no
shell or HTTP client: Docker's HEALTHCHECK, compose, Kubernetes exec probes.
It asks the instances over their control sockets, so it needs no metrics
address.

Flags:
`

// cmdHealth runs 'faithif health'.
func cmdHealth(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", healthUsage, stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "give up on an instance that does not answer within this long")
	name, err := parseWithName(fs, args, false)
	if err != nil {
		return err
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("health: not ready: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	all, err := statuses(ctx, runDir, name)
	if err == nil && len(all) == 0 {
		err = fmt.Errorf("no faith interfaces are running (run directory %s)", runDir)
	}
	if err != nil {
		return fmt.Errorf("health: not ready: %w", err)
	}
	ready := true
	for _, st := range all {
		if st.NotReady != "" {
			fmt.Fprintf(stderr, "faithif: health: %s: not ready: %s\n", st.Name, st.NotReady)
			ready = false
			continue
		}
		fmt.Fprintf(stdout, "%s: ready\n", st.Name)
	}
	if !ready {
		return silentError{fmt.Errorf("not ready")}
	}
	return nil
}
