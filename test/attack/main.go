package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// rowFunc runs one row into r; a Fatal on p ends it with an error.
type rowFunc func(ctx context.Context, p *netlab.Program, cfg *config, r *result)

// rows are the rows with what each attack is called in the table.
var rows = map[int]struct {
	attack string
	run    rowFunc
}{
	1:  {"forged ICMPv6 PTB (MTU 68, 1; random seq; port spray)", rowPTB},
	2:  {"spoofed SYN flood, random /64s", rowSYNFlood},
	3:  {"bigger spoofed SYN flood: memory", rowBigFlood},
	4:  {"SYN floods to a denied destination and from one /64: logs", rowLogFlood},
	5:  {"access file emptied, then reload", rowEmptyRules},
	6:  {"local route 198.51.100.128/25 on the router", rowLocalRoute},
	7:  {"many connections from one LAN /64", rowLAN},
	8:  {"run directory writable by others", rowRunDir},
	9:  {"huge control request", rowControl},
	10: {"bad flags, retransmit after the server refused", rowFlags},
	11: {"ip link del faith0 with flows open", rowLinkDel},
}

func main() { os.Exit(run()) }

func run() int {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "attack: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "attack: must run as root (network namespaces, raw sockets)")
		return 2
	}
	// Row 7 holds its client connections in this process, and faithif
	// inherits the limit: raise it if allowed (CAP_SYS_RESOURCE), else Go's
	// soft limit at the hard one stays.
	raiseNofile(65536)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\nattack: interrupted: ending the current row (again to stop at once)")
		cancel()
		<-sigs
		abandon("interrupted twice")
	}()

	var logOut io.Writer
	if cfg.verbose {
		logOut = os.Stderr
	}
	start := time.Now()
	bin := ""
	setup := netlab.NewProgram(ctx, "setup", os.Stderr)
	if err := setup.Run(func(p *netlab.Program) { bin = netlab.Binary(p) }); err != nil {
		fmt.Fprintf(os.Stderr, "attack: %v\n", err)
		return 1
	}
	defer netlab.RemoveBuiltBinary()
	var kernel syscall.Utsname
	syscall.Uname(&kernel)
	fmt.Printf("attack: faithif %s; kernel %s; %d CPUs; quick=%v; deadline %v\n",
		bin, utsString(kernel.Release[:]), runtime.NumCPU(), cfg.quick, cfg.deadline)

	var results []*result
	for _, n := range allRows {
		if !cfg.rows[n] {
			continue
		}
		r := &result{row: n, attack: rows[n].attack}
		results = append(results, r)
		if ctx.Err() != nil {
			r.skipped = "the run's deadline (ATTACK_DEADLINE) passed or it was interrupted"
			continue
		}
		fmt.Printf("\n==> [%3.0fs] row %d: %s\n", time.Since(start).Seconds(), n, r.attack)
		rowStart := time.Now()
		p := netlab.NewProgram(ctx, fmt.Sprintf("row %d", n), logOut)
		done := make(chan error, 1)
		go func() { done <- p.Run(func(p *netlab.Program) { rows[n].run(ctx, p, cfg, r) }) }()
		select {
		case r.err = <-done:
		case <-time.After(time.Until(deadlineOf(ctx)) + 60*time.Second):
			printTable(os.Stdout, results)
			abandon(fmt.Sprintf("row %d still running 60 s after the deadline", n))
		}
		r.elapsed = time.Since(rowStart)
		fmt.Printf("    row %d: held: %s; %s (%v)\n", n, r.status(), dash(cell(r)), r.elapsed.Round(time.Second))
	}

	fmt.Printf("\n==> [%3.0fs] results\n\n", time.Since(start).Seconds())
	printTable(os.Stdout, results)
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err == nil {
			printTable(f, results)
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "attack: ATTACK_OUT: %v\n", err)
		}
	}
	code := 0
	for _, r := range results {
		if r.status() != "yes" {
			code = 1
		}
	}
	fmt.Printf("\nattack: %v in all; %s\n", time.Since(start).Round(time.Second), map[int]string{0: "every row held", 1: "some rows did not hold or did not run"}[code])
	return code
}

// abandon deletes the labs' namespaces and exits: a row ignored its
// bound or the user insisted. faithif processes die with this process.
func abandon(why string) {
	names := netlab.DeleteAllLabs()
	fmt.Fprintf(os.Stderr, "attack: %s: deleted namespaces %s and stopping\n", why, strings.Join(names, " "))
	os.Exit(1)
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Hour)
	}
	return d
}

// raiseNofile raises the soft and hard RLIMIT_NOFILE to at least n.
// syscall.Setrlimit (not x/sys's) so that the processes this one starts
// inherit it.
func raiseNofile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	lim.Cur, lim.Max = max(lim.Cur, n), max(lim.Max, n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}
