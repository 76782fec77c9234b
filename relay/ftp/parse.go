package ftp

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// command is a client's command line, as the relay reads it to decide
// whether to translate it; the line itself is passed on as it came.
type command struct {
	verb string // upper case, without Telnet IAC sequences before it
	arg  string // after the first space, without the line end
}

// parseCommand reads the verb and the argument of line (with its line
// end). Telnet commands before the verb (IAC IP, IAC DM: the Synch before
// ABOR) and a Data Mark byte left by urgent data are skipped.
func parseCommand(line []byte) command {
	for len(line) > 0 {
		switch {
		case line[0] == 0xff && len(line) > 1: // IAC and a command
			line = line[2:]
			continue
		case line[0] == 0xf2: // DM, the urgent byte of a Synch read in line
			line = line[1:]
			continue
		}
		break
	}
	s := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(s, " ")
	return command{verb: strings.ToUpper(verb), arg: strings.TrimSpace(arg)}
}

// Errors of the address parsers, each answered with its own reply.
var (
	errSyntax   = errors.New("syntax error")
	errProtocol = errors.New("network protocol not supported")
)

// parseEPRT parses EPRT's argument, |2|ADDR|PORT| with any delimiter
// between ! and ~ (RFC 2428). A well-formed IPv4 one (protocol 1) is
// errProtocol: a client relayed from IPv6 has no IPv4 address of its own.
func parseEPRT(arg string) (netip.AddrPort, error) {
	if len(arg) < 2 || arg[0] < 33 || arg[0] > 126 {
		return netip.AddrPort{}, errSyntax
	}
	f := strings.Split(arg[1:], arg[:1])
	if len(f) != 4 || f[3] != "" {
		return netip.AddrPort{}, errSyntax
	}
	if _, err := strconv.ParseUint(f[0], 10, 8); err != nil {
		return netip.AddrPort{}, errSyntax // no protocol number at all: "||||"
	}
	if f[0] != "1" && f[0] != "2" {
		return netip.AddrPort{}, errProtocol
	}
	port, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, errSyntax
	}
	a, err := netip.ParseAddr(f[1])
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, errSyntax
	}
	switch {
	case f[0] == "1" && a.Is4():
		return netip.AddrPort{}, errProtocol
	case f[0] == "2" && a.Is6() && !a.Is4In6():
		return netip.AddrPortFrom(a, uint16(port)), nil
	}
	return netip.AddrPort{}, errSyntax
}

// parseLPRT parses LPRT's argument (RFC 1639): AF,HAL,H1,...,HN,PAL,P1,P2
// in decimal, AF 6, HAL 16 and PAL 2 for IPv6. Another family, such as 4,
// is errProtocol.
func parseLPRT(arg string) (netip.AddrPort, error) {
	f := strings.Split(arg, ",")
	n := make([]int, len(f))
	for i, s := range f {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 0 || v > 255 {
			return netip.AddrPort{}, errSyntax
		}
		n[i] = v
	}
	if len(n) < 2 || len(n) < 2+n[1]+1 {
		return netip.AddrPort{}, errSyntax
	}
	hal := n[1]
	if len(n) != 2+hal+1+n[2+hal] {
		return netip.AddrPort{}, errSyntax
	}
	if n[0] != 6 {
		return netip.AddrPort{}, errProtocol
	}
	if hal != 16 || n[2+hal] != 2 {
		return netip.AddrPort{}, errSyntax
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(n[2+i])
	}
	port := uint16(n[2+hal+1])<<8 | uint16(n[2+hal+2])
	if port == 0 {
		return netip.AddrPort{}, errSyntax
	}
	return netip.AddrPortFrom(netip.AddrFrom16(b), port), nil
}

// pasvRE finds h1,h2,h3,h4,p1,p2 in a 227 reply: RFC 1123 4.1.2.6 asks a
// client to scan for it, as servers word the text around it freely.
var pasvRE = regexp.MustCompile(`(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3})`)

// parsePASV reads the address and port of a 227 reply's text.
func parsePASV(text string) (netip.AddrPort, error) {
	m := pasvRE.FindStringSubmatch(text)
	if m == nil {
		return netip.AddrPort{}, fmt.Errorf("no h1,h2,h3,h4,p1,p2 in %q", strings.TrimSpace(text))
	}
	var n [6]byte
	for i := range n {
		v, _ := strconv.Atoi(m[i+1])
		if v > 255 {
			return netip.AddrPort{}, fmt.Errorf("%s is not a byte in %q", m[i+1], strings.TrimSpace(text))
		}
		n[i] = byte(v)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(n[:4])), uint16(n[4])<<8|uint16(n[5])), nil
}

// portCommand is the PORT command for a (an IPv4 address and port).
func portCommand(a netip.AddrPort) string {
	b := a.Addr().As4()
	return fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d\r\n", b[0], b[1], b[2], b[3], a.Port()>>8, a.Port()&0xff)
}

// epsvReply is the 229 reply announcing port.
func epsvReply(port uint16) string {
	return fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port)
}

// lpsvReply is the 228 reply announcing a, an IPv6 address and port (RFC
// 1639).
func lpsvReply(a netip.AddrPort) string {
	var b strings.Builder
	b.WriteString("228 Entering Long Passive Mode (6,16")
	for _, x := range a.Addr().As16() {
		fmt.Fprintf(&b, ",%d", x)
	}
	fmt.Fprintf(&b, ",2,%d,%d)\r\n", a.Port()>>8, a.Port()&0xff)
	return b.String()
}

// replyCode returns the code of a reply line that begins one, and whether
// the reply goes on over more lines (a hyphen after the code).
func replyCode(line []byte) (code int, more, ok bool) {
	if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) > 3 {
		switch line[3] {
		case '-':
			return code, true, true
		case ' ', '\r', '\n':
		default:
			return 0, false, false
		}
	}
	return code, false, true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
