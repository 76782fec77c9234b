// Command attack runs the attacks of issue 12 against faithif, each in its
// own throwaway namespace lab with a legitimate workload beside it, and
// prints a table: what was sent, how the legitimate clients fared, faithif's
// RSS, goroutines and descriptors before, during (peak) and after, and
// whether the row's expected behaviour held, with the figure that decided it.
// Run it as root through "make attack" (which builds bin/faithif and sets
// FAITHIF_BIN), or "go run ./test/attack". It exits 1 if a row's
// expectation did not hold or a row could not run.
//
// The lab is test/netlab's (client 2001:db8:1::2, router with faith0 and
// 2001:db8:46::/96, server 192.0.2.2) plus an attacker host 2001:db8:2::2
// beside the client, which forges packets through raw sockets and spoofs
// sources from 2001:db8:f000::/36, a range the router routes into a
// blackhole (answers to it vanish silently, as beyond a real router).
// Documentation addresses only; namespaces are named by netlab (fiPIDxN*),
// deleted after each row even when it fails, and swept by the next run if
// this one is killed. faithif runs with --metrics 127.0.0.1:9464 inside the
// router namespace; /metrics gives process_resident_memory_bytes,
// go_goroutines and process_open_fds.
//
// The legitimate workload: a steady trickle of real kernel connections
// from the client (one every ATTACK_LEGIT_INTERVAL) to an echo server,
// each exchanging 64 bytes. A connect counts as a success if it connects
// within ATTACK_LEGIT_OK and the echo comes back; the table shows
// successes/attempts and the median and maximum connect time.
//
// The rows (the table):
//
//	1  forged ICMPv6 Packet Too Big (MTU 68 and 1) quoting a live download's
//	   4-tuple with random sequence numbers, then a spray over the client's
//	   ephemeral ports; offloads off at both ends of the client's link, as
//	   in the issue. Holds if the segments the client receives (captured on
//	   its link) keep their full size after each (PTBs outside the send
//	   window are ignored, not clamped to 1280), 95% of the PTBs reached
//	   faithif, and every download keeps >= half its throughput.
//	2  spoofed SYN flood from random /64s to an open port, the legitimate
//	   client ATTACK_LEGIT_RTT away (netem, or netlab's delay line where the
//	   kernel has no netem); then, against a faithif of its own (not
//	   already under pressure), a slow one: ATTACK_SLOW_COUNT SYNs at
//	   ATTACK_SLOW_RATE a second. Each legitimate connect during either
//	   comes from a new address of the client's /64 (added to its link
//	   first), so that each passes the SYN challenge, not only the first
//	   (a validated address is trusted for 5 minutes). Holds if every
//	   legitimate connect succeeds within 3 s with at most one SYN
//	   retransmission (read from its socket); the flooded
//	   port accepts at most a quarter of max_handshakes (the relay's
//	   dial-first share) + 8 connections, and the slow flood's at most 8 +
//	   1.5 s of SYNs (the stack's pressure trigger: 8 half-open handshakes
//	   older than 1 s, stack/pressure.go's staleCount and staleAge); the
//	   legitimate client gets ECONNREFUSED from a closed port during the
//	   slow flood; and after each flood the server's connections and
//	   faithif's flows and descriptors come back within ATTACK_RELEASE.
//	3  a bigger, faster SYN flood. Holds if RSS peaks at most
//	   ATTACK_RSS_CAP_MB above where it started (the README's stated bound
//	   for the default --max-handshakes) and is back within
//	   ATTACK_RSS_RETURN_MB of where it started ATTACK_RSS_AFTER later.
//	4  SYN floods to a denied destination (127.0.0.1) and from one /64.
//	   Holds if faithif logs at most ATTACK_LOG_LINES_PER_S lines a second
//	   (+50) during each, and its counters account for every denied SYN.
//	5  "faithif reload" of an access file emptied while running. Holds if
//	   the reload succeeds and every flow after it is denied.
//	6  "ip route add local 198.51.100.128/25 dev lo" on the router. Holds if
//	   flows to 198.51.100.129:8080 are refused and the router's listener
//	   gets nothing.
//	7  ATTACK_LAN_CONNS concurrent connections from ATTACK_LAN_ADDRS
//	   addresses of one /64. Holds if all are accepted.
//	8  run directories writable by others (mode 0777; owned by nobody, with
//	   a planted log symlink; with a planted control socket). Holds if
//	   faithif refuses each, follows no symlink and talks to no planted
//	   socket.
//	9  one ATTACK_CTL_MB MB request on the control socket. Holds if it is
//	   refused and RSS grows by less than 32 MiB.
//	10 SYN+FIN and SYN+RST (ATTACK_FLAGS_COUNT each); a SYN retransmitted
//	   right after the server refused it with a RST. Holds if the bad flags
//	   are discarded as bad_flags with no dial, the retransmission starts no
//	   second dial (counted at the server), and the server's RST is counted
//	   refused, not error. (A RST after the server's SYN-ACK, before the
//	   relay's connect returns, gives ECONNRESET; no server here can make
//	   that race happen on demand, and relay's unit test
//	   TestDialFailureAnswers covers it.)
//	11 "ip link del faith0" with ATTACK_LINKDEL_FLOWS flows open. Holds if
//	   every IPv4 side is reset within a second.
//
// Knobs (environment variables; durations as Go durations, "90s", or
// seconds, "90"). Defaults are for "make attack"; ATTACK_QUICK=1 gives the
// CI sizes in parentheses.
//
//	ATTACK_QUICK            1: small sizes for CI (about 2 minutes)
//	ATTACK_ROWS             rows to run, e.g. "2,3,7" (all)
//	ATTACK_DEADLINE         bound on the whole run: 840s (300s); rows not
//	                        started by then are skipped, a row still running
//	                        60 s after it is abandoned
//	ATTACK_SETTLE           wait before the "after" reading: 5s (2s)
//	ATTACK_LEGIT_INTERVAL   legitimate connect every 200ms (200ms)
//	ATTACK_LEGIT_OK         a legitimate connect must connect within 3s (3s)
//	ATTACK_LEGIT_TIMEOUT    a legitimate connect is given up after 10s (10s)
//	ATTACK_PTB_MBPS         row 1: each download's rate, 10 MB/s (5)
//	ATTACK_PTB_DOWNLOADS    row 1: downloads, 5 (2)
//	ATTACK_PTB_SECONDS      row 1: each throughput window, 5s (2s)
//	ATTACK_PTB_SPRAY        row 1: ports sprayed from 32768, 28232 (28232)
//	ATTACK_SYN_COUNT        row 2: SYNs, 100000 (20000)
//	ATTACK_SYN_RATE         row 2: SYNs a second, 10000 (5000)
//	ATTACK_LEGIT_RTT        row 2: the legitimate client's RTT, 150ms (150ms)
//	ATTACK_SLOW_COUNT       row 2: SYNs of the slow flood, 300 (150)
//	ATTACK_SLOW_RATE        row 2: their rate a second, 10 (10)
//	ATTACK_RELEASE          row 2: bound on the wait for the server's
//	                        connections and faithif's descriptors to come
//	                        back after each flood, 60s (60s)
//	ATTACK_BIG_COUNT        row 3: SYNs, 300000 (30000)
//	ATTACK_BIG_RATE         row 3: SYNs a second, 30000 (10000)
//	ATTACK_RSS_AFTER        row 3: when the "after" RSS is read, 60s (10s)
//	ATTACK_RSS_CAP_MB       row 3: how far above its start RSS may peak, 64 (the README's bound)
//	ATTACK_RSS_RETURN_MB    row 3: how far above its start RSS may stay, 32
//	ATTACK_LOG_COUNT        row 4: SYNs in each flood, 50000 (10000)
//	ATTACK_LOG_RATE         row 4: SYNs a second, 10000 (5000)
//	ATTACK_LOG_LINES_PER_S  row 4: log lines a second allowed, 150 (the issue's
//	                        flood logged about 30,000 a second)
//	ATTACK_LAN_CONNS        row 7: connections, 10000 (5000: still more than
//	                        the 4,096 faithif allowed a /64 before issue 12)
//	ATTACK_LAN_ADDRS        row 7: client addresses in the /64, 100 (20)
//	ATTACK_CTL_MB           row 9: request size in MB, 256 (64)
//	ATTACK_FLAGS_COUNT      row 10: SYN+FIN and SYN+RST each, 100 (20)
//	ATTACK_LINKDEL_FLOWS    row 11: flows open, 20 (20)
//	ATTACK_OUT              also write the table to this file (none)
//	ATTACK_VERBOSE          1: show the lab's own log lines
//
// A SYN rate not set explicitly is lowered, with the count, to 80% of what
// the attacker can send if it cannot send that fast (measured once, and
// said in the row's notes); the achieved rate is always shown.
package main
