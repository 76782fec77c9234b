package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: connhold serve|dial [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "connhold:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("listen", "", "address:port to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				fmt.Fprintln(os.Stderr, "connhold: accept:", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			// Hold it idle; close it once the client does, so that no
			// CLOSE_WAIT sockets pile up between runs.
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	fmt.Println("listening", ln.Addr())
	waitSignal()
	ln.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range held {
		c.Close()
	}
	return nil
}

func dial(args []string) error {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	to := fs.String("to", "", "address:port to connect to")
	n := fs.Int("n", 1000, "connections to open")
	conc := fs.Int("c", 32, "dials in flight at a time")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of one dial")
	fs.Parse(args)

	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: *timeout}
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				c, err := d.DialContext(context.Background(), "tcp", *to)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	held := 0
	for _, c := range conns {
		if c != nil {
			held++
		}
	}
	fe, _ := firstErr.Load().(string)
	if fe == "" {
		fe = "none"
	}
	fmt.Printf("held %d failed %d first-error %q\n", held, failed.Load(), fe)
	waitSignal()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

// waitSignal returns on SIGTERM or SIGINT.
func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
