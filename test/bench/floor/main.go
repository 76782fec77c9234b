// Command floor measures the lower bound of a relay that terminates its
// clients' TCP flows in gVisor: faithif's own stack (TUN, link endpoint,
// gVisor, forwarder) with no relay behind it. Each captured flow is accepted
// at once and answered by the program itself with a fixed HTTP response, as
// nginx would answer through the relay; there is no access check, no IPv4
// dial and no second socket. Whatever this program reaches in new
// connections per second and kept-alive requests per second is more than
// faithif can reach on the same machine: faithif does all of this and the
// relay's work besides.
//
// Usage (in a router namespace; test/bench/bench.sh runs it):
//
//	floor -name NAME [-body BYTES] [-plain]
//
// With -plain the flows are terminated by gVisor alone, set up as its own
// examples do (its fdbased link endpoint on the TUN descriptor, its TCP
// forwarder, gonet connections): the floor of gVisor itself, without
// faithif's link endpoint and flow table.
//
// It creates the TUN device NAME, prints "ready" once it captures, and runs
// until SIGINT or SIGTERM. The caller brings the link up and routes a prefix
// to it.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	gtun "gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/faithif/faithif/relay/flow"
	"github.com/faithif/faithif/stack"
)

func main() {
	name := flag.String("name", "", "TUN device to create")
	body := flag.Int("body", 1024, "response body size in bytes")
	plain := flag.Bool("plain", false, "gVisor's own link endpoint and forwarder instead of faithif's stack")
	flag.Parse()
	if *name == "" || flag.NArg() != 0 || *body < 0 {
		fmt.Fprintln(os.Stderr, "usage: floor -name NAME [-body BYTES]")
		os.Exit(2)
	}
	run := runStack
	if *plain {
		run = runPlain
	}
	if err := run(*name, *body); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(1)
	}
}

func runStack(name string, body int) error {
	dev, err := tun.CreateTUN(name, 1500)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	keep, closing := response(body, "keep-alive"), response(body, "close")
	s, err := stack.New(dev, func(r flow.Request) { serve(r, keep, closing) }, stack.Options{MTU: 1500, MaxInFlight: 8192})
	if err != nil {
		dev.Close()
		return fmt.Errorf("stack on %s: %w", name, err)
	}
	s.Link().SetCapture(true)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(func() { fmt.Println("ready") }) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err = <-errc:
	}
	s.Close()
	return err
}

// conn is what serve needs of a connection: stack.Conn and gonet.TCPConn
// both are one.
type conn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

func runPlain(name string, body int) error {
	fd, err := gtun.Open(name)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: 1500})
	if err != nil {
		return fmt.Errorf("link endpoint on %s: %w", name, err)
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv6.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	tw := tcpip.TCPTimeWaitTimeoutOption(time.Second)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw)
	if terr := s.CreateNIC(1, ep); terr != nil {
		return fmt.Errorf("nic: %s", terr)
	}
	s.SetPromiscuousMode(1, true)
	s.SetSpoofing(1, true)
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv6EmptySubnet, NIC: 1}})
	keep, closing := response(body, "keep-alive"), response(body, "close")
	fwd := tcp.NewForwarder(s, 0, 8192, func(r *tcp.ForwarderRequest) {
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		if terr != nil {
			r.Complete(true)
			return
		}
		r.Complete(false)
		serveConn(gonet.NewTCPConn(&wq, ep), keep, closing)
	})
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Close()
	return nil
}

// response returns the HTTP response with a body of body bytes and the given
// Connection header, as nginx answers.
func response(body int, connection string) []byte {
	h := "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/html\r\nContent-Length: " + strconv.Itoa(body) + "\r\nConnection: " + connection + "\r\n\r\n"
	return append([]byte(h), bytes.Repeat([]byte("x"), body)...)
}

// serve accepts the flow and answers every request on it, closing after a
// request that asks for it (Connection: close), as nginx does.
func serve(r flow.Request, keep, closing []byte) {
	c, err := r.Accept()
	if err != nil {
		return
	}
	serveConn(c, keep, closing)
}

// serveConn answers the requests on c on a goroutine of its own.
func serveConn(c conn, keep, closing []byte) {
	go func() {
		defer c.Close()
		buf := make([]byte, 4096)
		var pending []byte
		for {
			n, err := c.Read(buf)
			if n > 0 {
				pending = append(pending, buf[:n]...)
				for {
					i := bytes.Index(pending, []byte("\r\n\r\n"))
					if i < 0 {
						break
					}
					req := pending[:i]
					pending = pending[i+4:]
					last := bytes.Contains(bytes.ToLower(req), []byte("connection: close"))
					resp := keep
					if last {
						resp = closing
					}
					if _, err := c.Write(resp); err != nil || last {
						return
					}
				}
			}
			if err != nil {
				slog.Debug("read", "err", err)
				return
			}
		}
	}()
}
