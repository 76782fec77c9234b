package config

import (
	"fmt"
	"io"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/dns64"
)

// WritePlan says what `faithif run` would apply: keepfaith, the sysctls,
// each interface with its routes, the metrics address (`run --check`).
func (c *Config) WritePlan(w io.Writer) error {
	fmt.Fprintf(w, "%s: ok\n", c.File)
	if c.KeepFaith != nil {
		fmt.Fprintf(w, "  %s=%d\n", faithif.KeepFaithName, faithif.KeepFaithValue(*c.KeepFaith))
	}
	for _, s := range c.Sysctls {
		fmt.Fprintf(w, "  sysctl %s=%s\n", s.Key, s.Value)
	}
	if len(c.Sysctls) > 0 && c.KeepSysctls {
		fmt.Fprintln(w, "  sysctls kept after stop (sysctl_on_stop = keep)")
	}
	for _, in := range c.Interfaces {
		fmt.Fprintf(w, "  %s: prefixes %v, mtu %d", in.Name, in.Prefixes, in.MTU)
		if in.Rules != "" {
			fmt.Fprintf(w, ", rules %s", in.Rules)
		}
		if len(in.PrivilegedPorts) > 0 {
			fmt.Fprintf(w, ", privileged ports %v", in.PrivilegedPorts)
		}
		if len(in.ProxyProtocolPorts) > 0 {
			fmt.Fprintf(w, ", PROXY protocol ports %v", in.ProxyProtocolPorts)
		}
		if len(in.FTPPorts) > 0 {
			fmt.Fprintf(w, ", ftp ports %v", in.FTPPorts)
		}
		fmt.Fprintln(w)
		for _, r := range in.Routes {
			fmt.Fprintf(w, "    route %s dev %s\n", r, in.Name)
		}
		if d := in.DNS64; d != nil {
			fmt.Fprintf(w, "    dns64 on %v (udp, tcp), prefix %s, upstreams %v", d.Listen, d.Prefix, d.Upstreams)
			var allow []string
			if d.AllowLocalNets {
				allow = append(allow, dns64.LocalNets)
			}
			for _, p := range d.Allow {
				allow = append(allow, p.String())
			}
			fmt.Fprintf(w, ", clients %v\n", allow)
		}
	}
	var err error
	if c.Metrics != "" {
		_, err = fmt.Fprintf(w, "  metrics on %s\n", c.Metrics)
	}
	return err
}
