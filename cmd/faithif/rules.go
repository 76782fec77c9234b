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
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/relay"
)

const rulesUsage = `usage: faithif rules test [faithN | --access FILE [--prefix P]...] SRC6 [DST6]:PORT

Says what faithif decides for a flow from client SRC6 to [DST6]:PORT: the
IPv4 destination it maps to, whether it is always refused, and which line of
the access file matches. With faithN, the prefixes and the access file of
that running instance are used; otherwise --access and --prefix (default
64:ff9b::/96, and it says so).

Exit status, as grep's, for scripts: 0 permit, 1 deny, 2 when it cannot
decide (a bad argument, an unreadable or bad access file, faithN not
running).

Flags:
`

// cmdRules runs 'rules test'. A deny is a silentError (exit 1); anything
// that keeps it from deciding is a usage error or a troubleError (exit 2).
func cmdRules(args []string, stdout, stderr io.Writer) error {
	err := rulesTest(args, stdout, stderr)
	var ue usageError
	var se silentError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp), errors.As(err, &ue), errors.As(err, &se):
		return err
	}
	return troubleError{err}
}

// errDeny is the verdict deny: exit status 1, nothing more to say.
var errDeny = silentError{errors.New("deny")}

func rulesTest(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, rulesUsage)
			return flag.ErrHelp
		}
		return usagef("want 'faithif rules test ...'")
	}
	fs := newFlagSet("rules test", rulesUsage, stderr)
	var prefixes stringList
	fs.Var(&prefixes, "prefix", "FAITH prefix (repeatable; default 64:ff9b::/96)")
	rulesPath := fs.String("access", "", "access file (faithd.conf syntax)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 3 && faithif.ValidateName(rest[0]) == nil {
		runDir, err := faithif.RunDirFromEnv()
		if err != nil {
			return fmt.Errorf("rules test: %s: %w", rest[0], err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := control.Client{Path: runDir.SocketPath(rest[0])}.Status(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("rules test: %s: %w", rest[0], err)
		}
		prefixes = st.Prefixes
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

	assumed := len(prefixes) == 0 && *rulesPath == ""
	var pfx []netip.Prefix
	for _, s := range prefixes {
		p, err := relay.ParsePrefix(s)
		if err != nil {
			return usagef("--prefix: %v", err)
		}
		pfx = append(pfx, p)
	}
	mapper, err := relay.NewMapper(pfx...)
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
	if len(pfx) == 0 {
		how := "the default; give --prefix, or an interface to use its own"
		if !assumed {
			how = "the default; give --prefix"
		}
		fmt.Fprintf(stdout, "prefixes: %s (%s)\n", relay.WellKnownPrefix, how)
	}
	local, err := faithif.ReadLocalAddrs()
	if err != nil {
		return err
	}
	v := relay.Policy{Mapper: mapper, Rules: rules, IsLocal: local.Contains}.Check(src, dst)
	switch {
	case v.Refused != nil && !errors.Is(v.Refused, relay.ErrRouterAddress):
		to := "(none)"
		if v.To.IsValid() {
			to = v.To.Addr().String()
		}
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: deny (always refused: %s)\n", to, v.Refused)
		return errDeny
	case v.Refused != nil:
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: deny (always refused: %s is an address of this router, or in a local route)\n", v.To, v.To.Addr())
	case v.Rule != nil:
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: %s (%s:%d: %s)\n", v.To, permitDeny(v.Permit), rules.File, v.Rule.Line, v.Rule)
	case rules == nil:
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: permit (no access file)\n", v.To)
	case len(rules.Rules) == 0:
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: deny (%s has no rules: every flow is denied)\n", v.To, rules.File)
	default:
		fmt.Fprintf(stdout, "maps to:  %s\ndecision: deny (no line of %s matches)\n", v.To, rules.File)
	}
	if !v.Permit || v.Refused != nil {
		return errDeny
	}
	return nil
}

func permitDeny(p bool) string {
	if p {
		return "permit"
	}
	return "deny"
}
