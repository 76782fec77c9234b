// Command connhold opens or accepts many idle TCP connections and holds them,
// for the idle-connection memory figure of scripts/bench.sh.
//
//	connhold serve -listen 192.0.2.2:9001
//	    accepts connections and holds them open (reading nothing but the
//	    client's close) until SIGTERM.
//	connhold dial -to [2001:db8:46::c000:202]:9001 -n 3750 -c 32
//	    opens n connections (c dials at a time), prints one line
//	    "held N failed F first-error E" and holds them until SIGTERM.
//
// Go raises the soft RLIMIT_NOFILE to the hard limit at start, so one process
// can hold up to the hard limit (20,000 here) of sockets.
package main
