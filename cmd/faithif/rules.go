package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/relay"
)

const rulesUsage = `usage: faithif rules test [faithN | --config FILE [--prefix P]...] SRC6 [DST6]:PORT

Says what faithif decides for a flow from client SRC6 to [DST6]:PORT: the
IPv4 destination it maps to, whether it is always refused, and which line of
the access file matches. With faithN, the prefixes and the access file of
that running instance are used; otherwise --config and --prefix (default
64:ff9b::/96).

Flags:
`

func cmdRules(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, rulesUsage)
			return flag.ErrHelp
		}
		return usagef("want 'faithif rules test ...'")
	}
	fs := newFlagSet("rules test", rulesUsage, stderr)
	var prefixes prefixList
	fs.Var(&prefixes, "prefix", "FAITH prefix (repeatable; default 64:ff9b::/96)")
	rulesPath := fs.String("config", "", "access file")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	rest := fs.Args()
	if len(rest) == 3 && faithif.ValidateName(rest[0]) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := faithif.Client{Path: faithif.RunDirFromEnv().SocketPath(rest[0])}.Status(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("rules test: %s: %w", rest[0], err)
		}
		prefixes = nil
		for _, p := range st.Prefixes {
			if err := prefixes.Set(p); err != nil {
				return err
			}
		}
		*rulesPath = st.Rules
		rest = rest[1:]
	}
	if len(rest) != 2 {
		return usagef("want SRC6 and [DST6]:PORT")
	}
	src, err := netip.ParseAddr(rest[0])
	if err != nil || !src.Is6() || src.Is4In6() {
		return usagef("client %q: not an IPv6 address", rest[0])
	}
	dst, err := netip.ParseAddrPort(rest[1])
	if err != nil || !dst.Addr().Is6() {
		return usagef("destination %q: want [IPv6]:PORT", rest[1])
	}

	mapper, err := relay.NewMapper(prefixes...)
	if err != nil {
		return err
	}
	var rules *relay.Rules
	if *rulesPath != "" {
		if rules, err = relay.LoadRules(*rulesPath, faithif.IsLocalIPv4); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "flow:     [%s] -> %s\n", src, dst)
	v4, err := mapper.Map(dst.Addr())
	if err != nil {
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: deny (always refused: %s)\n", orNone(v4), err)
		return nil
	}
	to := netip.AddrPortFrom(v4, dst.Port())
	fmt.Fprintf(stdout, "maps to:  %s\n", to)
	if faithif.IsLocalIPv4(v4) {
		fmt.Fprintf(stdout, "decision: deny (always refused: %s is an address of this router)\n", v4)
		return nil
	}
	d := rules.Check(src, to)
	switch {
	case d.Rule != nil:
		fmt.Fprintf(stdout, "decision: %s (%s:%d: %s)\n", permitDeny(d.Permit), rules.File, d.Rule.Line, d.Rule)
	case rules == nil || len(rules.Rules) == 0:
		fmt.Fprintf(stdout, "decision: permit (no access rules)\n")
	default:
		fmt.Fprintf(stdout, "decision: deny (no line of %s matches)\n", rules.File)
	}
	return nil
}

func permitDeny(p bool) string {
	if p {
		return "permit"
	}
	return "deny"
}

func orNone(a netip.Addr) string {
	if !a.IsValid() {
		return "(none)"
	}
	return a.String()
}
