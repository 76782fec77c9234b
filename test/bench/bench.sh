#!/usr/bin/env bash
# faithif benchmark: the same client tools against the same IPv4-only server
# over three paths, one after another, in one throwaway namespace lab:
#
#   client4 (IPv4 only)  198.51.100.2/24 ---.
#                                           |  router
#                                           `- 198.51.100.1/24
#   client6 (IPv6 only)  2001:db8:1::2/64 ---- 2001:db8:1::1/64
#                                              192.0.2.1/24 ---- 192.0.2.2/24  server (IPv4 only)
#                                              nat64 (TAYGA)       iperf3 -s, nginx :80,
#                                              faith0 (faithif)    connhold (idle holder)
#
#   kernel:  client4 -> 192.0.2.2, routed by the router's kernel
#   TAYGA:   client6 -> 2001:db8:64::c000:202, NAT64 (tayga, 2001:db8:64::/96)
#   faithif: client6 -> 2001:db8:46::c000:202, faith0 (2001:db8:46::/96)
#
# Each path gets: iperf3 one stream each way, four streams server->client,
# both directions at once (--bidir),
# wrk new connections/s (Connection: close), wrk kept-alive requests/s and
# p99 latency; TAYGA and faithif also hold 15,000 idle connections for the
# memory figure; each measurement runs BENCH_REPEAT times and the median
# counts. Two more paths measure the floor of any relay that terminates its
# clients' flows in gVisor (test/bench/floor): faithif's stack, and gVisor
# set up as its own examples do, each answering HTTP itself with no relay,
# no IPv4 socket and no nginx behind it (wrk only); and, for what a relay
# whose IPv6 side the kernel terminates would reach, haproxy (TCP mode, one
# thread) on an AnyIP local route (wrk only). If perf works, faithif is also profiled during one extra
# single-stream and one extra new-connection run. Prints a table of figures,
# ratios and targets and writes BENCHMARKS.md. Run through 'make bench' (installs tayga, iperf3 and wrk,
# builds bin/faithif). Needs root. Everything is removed on exit, even on
# failure. Exits non-zero if the lab cannot be built or a measurement fails.
# The lab's pieces (namespaces, veths, nginx, faithif) are in
# test/scripts/lab.sh.
#
# Knobs (environment): BENCH_SECONDS (5, length of each measurement),
# BENCH_REPEAT (3 runs of each, the median is reported), BENCH_IDLE_CONNS
# (15000), BENCH_IDLE_SETTLE (3 s before reading the RSS), BENCH_PROFILE
# (auto, 1 or 0), BENCH_OUT (BENCHMARKS.md; '-' for none), BENCH_DEADLINE
# (900 s for the whole run), BENCH_KEEP (1: keep the raw outputs and logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/scripts/lab.sh
export LC_ALL=C

BIN=${FAITHIF_BIN:-$PWD/bin/faithif}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
DUR=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-3} # runs of each measurement; the table shows the median
IDLE=${BENCH_IDLE_CONNS:-15000}
PROFILE=${BENCH_PROFILE:-auto} # perf profiles of faithif: auto (if perf works), 1 or 0
SETTLE=${BENCH_IDLE_SETTLE:-3} # seconds between the last connection and the RSS reading
OUT=${BENCH_OUT:-$PWD/BENCHMARKS.md}
DEADLINE=${BENCH_DEADLINE:-900} # seconds; the whole run is stopped after this

FAITH_PREFIX=2001:db8:46::/96
FAITH_ADDR=2001:db8:46::c000:202
NAT64_PREFIX=2001:db8:64::/96
NAT64_ADDR=2001:db8:64::c000:202
TAYGA_ADDR4=203.0.113.1
TAYGA_POOL=203.0.113.128/25
SERVER=192.0.2.2

t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
LAB_T0=$t_start
LAB_DIE_FORMAT='\nbench: FAILED: %s'

lab_check_root
[ -x "$BIN" ] || die "$BIN not found: run 'make build' (or 'make bench')"
lab_check_tools "run 'test/scripts/install-deps.sh --bench' (make bench does)" ip ss curl nginx tayga iperf3 wrk haproxy timeout
[ -x "$GO" ] || command -v "$GO" >/dev/null || die "go not found (set GO=/path/to/go)"
if [ "$PROFILE" = auto ]; then
	# Debian's perf is a wrapper that fails without a perf for this kernel.
	if command -v perf >/dev/null && perf --version >/dev/null 2>&1; then PROFILE=1; else PROFILE=0; fi
fi

id=fib$$
C6=${id}c6 C4=${id}c4 R=${id}r S=${id}s
lab_tmpdir bench
TMP=$LAB_TMP
tayga_pid='' watchdog_pid='' floor_pid='' haproxy_pid=''
SERVER_PIDS=() # iperf3 servers and the connection holders
DIALER_PIDS=()
nat64_made=0

stop_faithif() {
	local pid=$faithif_pid i
	faithif_pid=''
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -TERM "$pid" 2>/dev/null || true # a second TERM stops at once, without the grace period
	stop_pid "$pid" TERM 3
}

stop_tayga() {
	stop_pid "$tayga_pid" TERM 5
	tayga_pid=''
	if [ "$nat64_made" = 1 ]; then
		ip -n "$R" link del nat64 2>/dev/null || echo "bench: could not remove the nat64 tun in $R" >&2
		nat64_made=0
	fi
	return 0
}

stop_dialers() {
	local p
	for p in "${DIALER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${DIALER_PIDS[@]}"; do stop_pid "$p" TERM 5; done
	DIALER_PIDS=()
}

cleanup() {
	local status=$? ns p
	set +e
	trap - ERR
	trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
	step "Cleaning up"
	[ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null
	stop_dialers
	stop_faithif
	stop_tayga
	stop_pid "$floor_pid" TERM 3
	stop_pid "$haproxy_pid" TERM 3
	for p in "${SERVER_PIDS[@]}"; do stop_pid "$p" TERM 3; done
	stop_pid "$nginx_pid" QUIT 5
	# Anything still running in the lab's namespaces was started here (a
	# client tool left by a killed timeout, an nginx worker): end it by pid.
	for ns in "${LAB_NAMESPACES[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
	done
	lab_del_namespaces
	rm -f "$TMP"/perf-*.data
	if [ -n "${BENCH_KEEP:-}" ]; then
		info "removed namespaces ${LAB_NAMESPACES[*]:-(none)} and the nat64 tun; raw outputs kept in $TMP"
	else
		rm -rf "$TMP"
		info "removed namespaces ${LAB_NAMESPACES[*]:-(none)}, the nat64 tun and $TMP"
	fi
	if [ "$status" -ne 0 ]; then
		printf 'bench: exit status %d\n' "$status" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
set -E
trap 'echo "bench: FAILED: line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR
trap 'die "interrupted"' INT TERM

# The whole run is bounded; every step also has its own timeout.
(
	trap 'kill "$s" 2>/dev/null; exit 0' TERM
	sleep "$DEADLINE" &
	s=$!
	wait "$s"
	echo "bench: still running after ${DEADLINE}s, stopping" >&2
	kill -TERM $$
) &
watchdog_pid=$!

step "Building the idle-connection holder (test/bench/connhold)"
timeout 180 "$GO" build -o "$TMP/connhold" ./test/bench/connhold || die "cannot build test/bench/connhold"
step "Building the floor responder (test/bench/floor)"
timeout 180 "$GO" build -o "$TMP/floor" ./test/bench/floor || die "cannot build test/bench/floor"
# A private copy, so that a rebuild of bin/faithif during the run changes nothing.
cp "$BIN" "$TMP/faithif"
FAITHIF=$TMP/faithif
"$FAITHIF" create --help >/dev/null 2>&1 || die "$BIN does not run ('faithif create --help' fails)"

#
# The lab.
#
step "Creating namespaces: client6 $C6, client4 $C4, router $R, server $S"
lab_netns "$C6" ipv6
lab_netns "$C4" ipv4
lab_netns "$R" router
lab_netns "$S" ipv4
lab_sysctl "$R" net.ipv4.ip_forward=1
for ns in "${LAB_NAMESPACES[@]}"; do
	# Many short connections from one address: wide port range, reuse
	# TIME_WAIT ports for new outgoing connections.
	lab_sysctl "$ns" net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
		net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
done

lab_veth "$R" r6 2001:db8:1::1/64 "$C6" c0 2001:db8:1::2/64
lab_veth "$R" r4 198.51.100.1/24 "$C4" c0 198.51.100.2/24
lab_veth "$R" rs 192.0.2.1/24 "$S" s0 $SERVER/24
ip -n "$C6" -6 route add default via 2001:db8:1::1 dev c0
ip -n "$C4" -4 route add default via 198.51.100.1 dev c0
ip -n "$S" -4 route add default via 192.0.2.1 dev s0
lab_wait_links
info "client6 2001:db8:1::2 | client4 198.51.100.2 -> router -> server $SERVER"

#
# The server: nginx, iperf3, the idle-connection holders.
#
step "Starting the server's nginx, iperf3 and connection holders in $S"
mkdir -p "$TMP/www"
head -c 1024 /dev/zero | tr '\0' 'x' >"$TMP/www/index.html" # 1 KiB
lab_start_nginx "$S" "$SERVER:80 backlog=8192" 8192 off "worker_rlimit_nofile 16384;" \
	"keepalive_timeout 300s; keepalive_requests 10000000;"
IPERF_PORTS=(5201 5202 5203)
for port in "${IPERF_PORTS[@]}"; do
	ip netns exec "$S" iperf3 -s -B $SERVER -p "$port" >"$TMP/iperf3-server-$port.log" 2>&1 &
	SERVER_PIDS+=($!)
done
HOLD_PORTS=(9001 9002) # two holder processes: each stays under 20,000 fds
for port in "${HOLD_PORTS[@]}"; do
	ip netns exec "$S" bash -c 'ulimit -n 20000 && exec "$0" "$@"' "$TMP/connhold" serve -listen "$SERVER:$port" \
		>"$TMP/holder-$port.log" 2>&1 &
	SERVER_PIDS+=($!)
done
server_listening() {
	local port
	for port in 80 "${IPERF_PORTS[@]}" "${HOLD_PORTS[@]}"; do
		ip netns exec "$S" ss -Htln "sport = :$port" | grep -q . || return 1
	done
}
lab_wait 100 0.1 nginx "$nginx_pid" "$TMP/nginx/error.log" server_listening ||
	die "server not listening on 80, ${IPERF_PORTS[*]} and ${HOLD_PORTS[*]} after 10 s: $(ip netns exec "$S" ss -Htln)"
info "nginx :80 (1 KiB index.html, 1 worker, keepalive), iperf3 :${IPERF_PORTS[*]}, holders :${HOLD_PORTS[*]}"

#
# Measurements.
#
declare -A RES # path.figure -> value
FAILURES=()

fail() { # what
	FAILURES+=("$1")
	printf '    FAILED: %s\n' "$1" >&2
}

# median of the arguments (numbers)
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit 1
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# iperf NAME NS ADDR PORT KEY [iperf3 args]: iperf3's receiver Gbit/s, the
# median of REPEAT runs, into RES[NAME.KEY], every run's into RES[NAME.KEY_runs].
iperf() {
	local name=$1 ns=$2 addr=$3 port=$4 key=$5 out v run ok vals=()
	shift 5
	for ((run = 1; run <= REPEAT; run++)); do
		out=$TMP/$name-iperf-$key-$run.txt
		ok=1
		timeout $((DUR + 25)) ip netns exec "$ns" iperf3 -c "$addr" -p "$port" -t "$DUR" -O 1 -f g "$@" >"$out" 2>&1 || ok=0
		if [ "$ok" = 0 ] && grep -q 'unable to connect to server' "$out"; then
			# The control connection was refused before any measuring (seen
			# through TAYGA: a client port reused while the server still
			# held it in TIME_WAIT): not a figure. Try that run once more.
			info "iperf3 $key run $run: $(grep -m1 'unable to connect' "$out"); trying again"
			sleep 1
			ok=1
			timeout $((DUR + 25)) ip netns exec "$ns" iperf3 -c "$addr" -p "$port" -t "$DUR" -O 1 -f g "$@" >"$out" 2>&1 || ok=0
		fi
		if [ "$ok" = 0 ]; then
			RES[$name.$key]=failed
			fail "$name: iperf3 $key ($*) run $run: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		v=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) } END { print v }' "$out")
		if [ -z "$v" ]; then
			RES[$name.$key]=failed
			fail "$name: iperf3 $key run $run: no receiver line in its output: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		vals+=("$v")
	done
	RES[$name.$key]=$(median "${vals[@]}")
	RES[$name.${key}_runs]=${vals[*]}
	info "$(printf '%-30s %8s Gbit/s  (runs: %s)' "iperf3 $key $*" "${RES[$name.$key]}" "${vals[*]}")"
}

# iperf_bidir NAME NS ADDR PORT: iperf3 --bidir, both directions at once on
# two connections; the receiver Gbit/s of each, the medians of REPEAT runs,
# into RES[NAME.bidir_c2s] and RES[NAME.bidir_s2c] (every run's into
# RES[NAME.bidir_c2s_runs] and RES[NAME.bidir_s2c_runs]).
iperf_bidir() {
	local name=$1 ns=$2 addr=$3 port=$4 out c2s s2c run c2ss=() s2cs=()
	for ((run = 1; run <= REPEAT; run++)); do
		out=$TMP/$name-iperf-bidir-$run.txt
		if ! timeout $((DUR + 25)) ip netns exec "$ns" iperf3 -c "$addr" -p "$port" -t "$DUR" -O 1 -f g --bidir >"$out" 2>&1; then
			RES[$name.bidir_c2s]=failed RES[$name.bidir_s2c]=failed
			fail "$name: iperf3 --bidir run $run: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		# [TX-C] is the client sending (client→server), [RX-C] the client receiving.
		c2s=$(awk '/\[TX-C\]/ && /receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) } END { print v }' "$out")
		s2c=$(awk '/\[RX-C\]/ && /receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) } END { print v }' "$out")
		if [ -z "$c2s" ] || [ -z "$s2c" ]; then
			RES[$name.bidir_c2s]=failed RES[$name.bidir_s2c]=failed
			fail "$name: iperf3 --bidir run $run: no [TX-C]/[RX-C] receiver lines: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		c2ss+=("$c2s") s2cs+=("$s2c")
	done
	RES[$name.bidir_c2s]=$(median "${c2ss[@]}")
	RES[$name.bidir_s2c]=$(median "${s2cs[@]}")
	RES[$name.bidir_c2s_runs]=${c2ss[*]}
	RES[$name.bidir_s2c_runs]=${s2cs[*]}
	info "$(printf '%-30s %8s / %s Gbit/s client→server / server→client (runs: %s / %s)' "iperf3 --bidir" \
		"${RES[$name.bidir_c2s]}" "${RES[$name.bidir_s2c]}" "${c2ss[*]}" "${s2cs[*]}")"
}

# cpu_ticks PID: the user and system CPU time PID has used, in clock ticks
# (/proc/PID/stat fields 14 and 15); empty without a PID.
cpu_ticks() {
	[ -n "${1:-}" ] || return 0
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true
}

# wrk latency value (e.g. 850.00us, 1.23ms, 1.02s, 1.50m) in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
		else if (v ~ /h$/) { sub(/h$/, "", v); printf "%.3f", v * 3600000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else print "?" }'
}

# wrk_run NAME NS URL KEY [wrk args]: REPEAT runs; the median requests/s into
# RES[NAME.KEY], the median p99 (ms) into RES[NAME.KEY_p99], the errors of
# all runs (wrk's socket errors and non-2xx answers) into RES[NAME.KEY_err]
# (total) and RES[NAME.KEY_errs] (by kind), the requests of all runs into
# RES[NAME.KEY_n].
wrk_run() {
	local name=$1 ns=$2 url=$3 key=$4 out rps p99 sock non2xx total=0 detail='' n=0 run kind c
	local rpss=() p99s=() t0 t1 ticks=0
	local -A errs=()
	shift 4
	for ((run = 1; run <= REPEAT; run++)); do
		out=$TMP/$name-wrk-$key-$run.txt
		t0=$(cpu_ticks "$MEASURE_PID")
		if ! timeout $((DUR + 30)) ip netns exec "$ns" wrk -t2 -c64 -d"${DUR}s" --latency "$@" "$url" >"$out" 2>&1; then
			RES[$name.$key]=failed
			fail "$name: wrk $key run $run: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
		p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
		if [ -z "$rps" ] || [ "$p99" = "?" ]; then
			RES[$name.$key]=failed
			fail "$name: wrk $key run $run: no Requests/sec or 99% in its output: $(tail -n 3 "$out" | tr '\n' ' ')"
			return 0
		fi
		t1=$(cpu_ticks "$MEASURE_PID")
		[ -z "$t0" ] || [ -z "$t1" ] || ticks=$((ticks + t1 - t0))
		rpss+=("$rps") p99s+=("$p99")
		n=$((n + $(awk '/requests in/ { print $1 }' "$out")))
		sock=$(sed -n 's/^ *Socket errors: *//p' "$out") # connect A, read B, write C, timeout D
		if [ -n "$sock" ]; then
			while read -r kind c; do
				[ "${c:-0}" -gt 0 ] || continue
				errs[$kind]=$((${errs[$kind]:-0} + c))
			done < <(tr ',' '\n' <<<"$sock")
		fi
		non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
		if [ -n "$non2xx" ] && [ "$non2xx" -gt 0 ]; then
			errs[non-2xx]=$((${errs[non-2xx]:-0} + non2xx))
		fi
	done
	for kind in connect read write timeout non-2xx; do
		[ -n "${errs[$kind]:-}" ] || continue
		total=$((total + ${errs[$kind]}))
		detail+="${detail:+, }$kind ${errs[$kind]}"
	done
	RES[$name.$key]=$(median "${rpss[@]}")
	RES[$name.${key}_runs]=${rpss[*]}
	RES[$name.${key}_p99]=$(median "${p99s[@]}")
	RES[$name.${key}_p99_runs]=${p99s[*]}
	RES[$name.${key}_err]=$total
	RES[$name.${key}_errs]=${detail:-none}
	RES[$name.${key}_n]=$n
	# The path's own CPU time per 1,000 requests, over all runs: what a
	# change costs or saves even when the lab's cores are shared.
	if [ -n "$MEASURE_PID" ] && [ "$n" -gt 0 ]; then
		RES[$name.${key}_cpu]=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.4f", t / hz / n * 1000 }')
	fi
	info "$(printf '%-30s %8s req/s (runs: %s), p99 %s ms (runs: %s), %s requests, errors: %s, CPU %s s per 1000 requests' "wrk $key" \
		"${RES[$name.$key]}" "${rpss[*]}" "${RES[$name.${key}_p99]}" "${p99s[*]}" "$n" "${detail:-none}" "${RES[$name.${key}_cpu]:-—}")"
}

# measure NAME NS ADDR HOST: every figure of one path.
measure() {
	local name=$1 ns=$2 addr=$3 host=$4
	local url="http://$host/"
	# The path must work before it is measured.
	timeout 15 ip netns exec "$ns" curl -gsSf --max-time 10 -o /dev/null "$url" ||
		die "$name path: cannot fetch $url from $ns"
	iperf "$name" "$ns" "$addr" "${IPERF_PORTS[0]}" s2c -R
	iperf "$name" "$ns" "$addr" "${IPERF_PORTS[0]}" c2s
	iperf "$name" "$ns" "$addr" "${IPERF_PORTS[1]}" s2c4 -R -P 4
	iperf_bidir "$name" "$ns" "$addr" "${IPERF_PORTS[0]}"
	wrk_run "$name" "$ns" "$url" cps -H 'Connection: close'
	wrk_run "$name" "$ns" "$url" ka
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
server_held() {
	ip netns exec "$S" ss -Htn state established "( sport = :${HOLD_PORTS[0]} or sport = :${HOLD_PORTS[1]} )" | wc -l
}

# idle NAME PID ADDR6: opens IDLE connections from client6 to the holders
# through ADDR6 (4 processes), and records PID's RSS before and with them.
idle() {
	local name=$1 pid=$2 addr=$3 i n per port f held=0 failed=0 errs='' before with srv lines
	before=$(rss_kib "$pid")
	per=$((IDLE / 4))
	DIALER_PIDS=()
	for i in 0 1 2 3; do
		n=$per
		[ $i -eq 3 ] && n=$((IDLE - 3 * per))
		port=${HOLD_PORTS[$((i % 2))]}
		ip netns exec "$C6" bash -c 'ulimit -n 20000 && exec "$0" "$@"' "$TMP/connhold" dial \
			-to "[$addr]:$port" -n "$n" -c 32 -timeout 10s >"$TMP/$name-dialer-$i.txt" 2>&1 &
		DIALER_PIDS+=($!)
	done
	for ((i = 0; i < 1200; i++)); do # up to 120 s
		lines=0
		for f in "$TMP/$name"-dialer-?.txt; do grep -q '^held ' "$f" && lines=$((lines + 1)); done
		[ $lines -eq 4 ] && break
		for p in "${DIALER_PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null || { cat "$TMP/$name"-dialer-?.txt >&2; die "$name: a connection dialer exited"; }
		done
		sleep 0.1
	done
	[ $lines -eq 4 ] || { stop_dialers; die "$name: $IDLE connections not opened within 120 s"; }
	for f in "$TMP/$name"-dialer-?.txt; do
		read -r _ h _ fl _ e <"$f"
		held=$((held + h)) failed=$((failed + fl))
		[ "$e" = '"none"' ] || errs=$e
	done
	for ((i = 0; i < SETTLE; i++)); do # let the relay settle
		sleep 1
		[ -z "${BENCH_DEBUG:-}" ] || info "$name: RSS after $((i + 1)) s: $(rss_kib "$pid") KiB"
	done
	with=$(rss_kib "$pid")
	srv=$(server_held)
	RES[$name.rss_before]=$before
	RES[$name.rss_with]=$with
	RES[$name.held]=$held
	RES[$name.dial_failed]=$failed
	RES[$name.dial_err]=${errs:-none}
	RES[$name.srv_held]=$srv
	RES[$name.kib]=$(awk -v a="$before" -v b="$with" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')
	if [ "$name" = faithif ]; then
		RES[$name.flows_open]=$(faithif_status | sed -n 's/.*"flows_open": *\([0-9]*\).*/\1/p')
	fi
	info "$name: clients hold $held (failed $failed${errs:+, e.g. $errs}), server holds $srv${RES[$name.flows_open]:+, flows_open ${RES[$name.flows_open]}}"
	info "$name: RSS $before KiB before, $with KiB with $IDLE idle connections: ${RES[$name.kib]} KiB per connection"
	stop_dialers
	for ((i = 0; i < 200; i++)); do # up to 20 s for the closes to get through
		[ "$(server_held)" -eq 0 ] && break
		sleep 0.1
	done
}

# profile KEY LABEL CMD...: runs CMD in client6 while perf samples faithif
# for DUR seconds; the flat profile (self time by symbol) goes to
# PROFILES[KEY] and its label to PROFILE_LABELS[KEY].
declare -A PROFILES PROFILE_LABELS
profile() {
	local key=$1 label=$2 data perf_pid
	data=$TMP/perf-$key.data
	shift 2
	timeout $((DUR + 20)) perf record -q -F 499 -p "$faithif_pid" -o "$data" -- sleep "$DUR" \
		>"$TMP/perf-$key.log" 2>&1 &
	perf_pid=$!
	timeout $((DUR + 25)) ip netns exec "$C6" "$@" >"$TMP/perf-$key-load.txt" 2>&1 ||
		info "profile $key: the load ($1) failed: $(tail -n 2 "$TMP/perf-$key-load.txt" | tr '\n' ' ')"
	if ! wait "$perf_pid" || [ ! -s "$data" ]; then
		info "profile $key: perf record failed, no profile: $(tail -n 2 "$TMP/perf-$key.log" | tr '\n' ' ')"
		return 0
	fi
	PROFILES[$key]=$(
		clean() { grep -v '^#' | grep -v '^[[:space:]]*$' | sed -E 's/([[:space:]]+-)*[[:space:]]*$//'; }
		echo "event: $(timeout 30 perf evlist -i "$data" 2>/dev/null | head -n 1)"
		echo "by DSO:"
		timeout 60 perf report -i "$data" --stdio --sort dso --percent-limit 1 2>/dev/null | clean | head -n 6
		echo "by symbol (at least 0.5%):"
		timeout 60 perf report -i "$data" --stdio --sort dso,symbol --percent-limit 0.5 2>/dev/null | clean | head -n 25
	) || true
	PROFILE_LABELS[$key]=$label
	info "profile $key ($label): faithif's CPU time:"
	head -n 14 <<<"${PROFILES[$key]}" | sed 's/^/      /'
}

faithif_status() { timeout 10 ip netns exec "$R" env FAITHIF_RUN_DIR="$TMP/run" "$FAITHIF" show faith0 --json; }

start_faithif() {
	lab_start_faithif "$R" "$TMP/run" "$FAITHIF" "$TMP/faithif-$1.log" create faith0 --prefix "$FAITH_PREFIX" \
		--keepfaith --route -f --max-flows-per-client 20000 --max-handshakes-per-client 1024 \
		--max-flows-per-address 20000 --max-handshakes-per-address 1024
	ip -n "$R" -6 route show "$FAITH_PREFIX" | grep -q faith0 || die "faithif --route did not install $FAITH_PREFIX dev faith0"
}

#
# 1. kernel
#
step "Path 1/3 kernel: client4 -> $SERVER routed by the router"
MEASURE_PID='' # the kernel path has no process of its own
measure kernel "$C4" $SERVER $SERVER

#
# 2. TAYGA
#
step "Path 2/3 TAYGA: client6 -> $NAT64_ADDR (NAT64 $NAT64_PREFIX in $R)"
mkdir -p "$TMP/tayga/data"
cat >"$TMP/tayga/tayga.conf" <<EOF
tun-device nat64
ipv4-addr $TAYGA_ADDR4
prefix $NAT64_PREFIX
dynamic-pool $TAYGA_POOL
data-dir $TMP/tayga/data
EOF
timeout 10 ip netns exec "$R" tayga -c "$TMP/tayga/tayga.conf" --mktun >"$TMP/tayga/mktun.log" 2>&1 ||
	die "tayga --mktun: $(cat "$TMP/tayga/mktun.log")"
nat64_made=1
ip -n "$R" link set nat64 up
ip -n "$R" -6 route add "$NAT64_PREFIX" dev nat64
ip -n "$R" -4 route add "$TAYGA_POOL" dev nat64
ip -n "$R" -4 route add "$TAYGA_ADDR4" dev nat64
ip netns exec "$R" tayga -c "$TMP/tayga/tayga.conf" --nodetach >"$TMP/tayga/tayga.log" 2>&1 &
tayga_pid=$!
sleep 0.5
kill -0 "$tayga_pid" 2>/dev/null || die "tayga exited: $(cat "$TMP/tayga/tayga.log")"
info "tayga pid $tayga_pid: $NAT64_PREFIX, pool $TAYGA_POOL"
MEASURE_PID=$tayga_pid
measure tayga "$C6" $NAT64_ADDR "[$NAT64_ADDR]"
step "TAYGA: $IDLE idle connections"
idle tayga "$tayga_pid" $NAT64_ADDR
stop_tayga

#
# 3. faithif
#
step "Path 3/3 faithif: client6 -> $FAITH_ADDR (faith0 $FAITH_PREFIX in $R)"
start_faithif run
info "faithif pid $faithif_pid (a copy of $BIN)"
MEASURE_PID=$faithif_pid
measure faithif "$C6" $FAITH_ADDR "[$FAITH_ADDR]"
timeout 10 ip netns exec "$R" env FAITHIF_RUN_DIR="$TMP/run" "$FAITHIF" show faith0 >"$TMP/faithif-show.txt" 2>&1 || true
if [ "$PROFILE" = 1 ]; then
	step "faithif: CPU profiles (perf, extra runs not in the table)"
	profile s2c "one stream server→client" iperf3 -c $FAITH_ADDR -p "${IPERF_PORTS[0]}" -t "$DUR" -R
	profile cps "new connections" wrk -t2 -c64 -d"${DUR}s" -H 'Connection: close' "http://[$FAITH_ADDR]/"
fi
stop_faithif
step "faithif: $IDLE idle connections (a fresh instance)"
start_faithif idle
sleep 2 # let the new instance settle before the baseline RSS
idle faithif "$faithif_pid" $FAITH_ADDR
stop_faithif

#
# 4. The floor: flows terminated in gVisor and answered there, nothing behind.
#
# floor_path NAME DEV PREFIX ADDR [floor flags]: start test/bench/floor on a
# TUN DEV in the router, route PREFIX to it, run the wrk figures against
# ADDR, stop it.
floor_path() {
	local name=$1 dev=$2 prefix=$3 addr=$4 i
	shift 4
	ip netns exec "$R" "$TMP/floor" -name "$dev" "$@" >"$TMP/$name.log" 2>&1 &
	floor_pid=$!
	for ((i = 0; i < 50; i++)); do grep -q '^ready' "$TMP/$name.log" && break; sleep 0.1; done
	grep -q '^ready' "$TMP/$name.log" || die "$name: test/bench/floor did not start: $(cat "$TMP/$name.log")"
	ip -n "$R" link set "$dev" up
	ip -n "$R" -6 route add "$prefix" dev "$dev"
	timeout 15 ip netns exec "$C6" curl -gsSf --max-time 10 -o /dev/null "http://[$addr]/" ||
		die "$name path: cannot fetch http://[$addr]/ from $C6"
	MEASURE_PID=$floor_pid
	wrk_run "$name" "$C6" "http://[$addr]/" cps -H 'Connection: close'
	wrk_run "$name" "$C6" "http://[$addr]/" ka
	stop_pid "$floor_pid" TERM 3
	floor_pid=''
}
step "Floor 1/2: faithif's stack answering HTTP itself (test/bench/floor; no relay, no nginx)"
floor_path stackfloor floor0 2001:db8:47::/96 2001:db8:47::c000:202
step "Floor 2/2: gVisor's own link endpoint and forwarder answering HTTP itself (test/bench/floor -plain)"
floor_path gvisorfloor plain0 2001:db8:48::/96 2001:db8:48::c000:202 -plain

step "For comparison: haproxy relaying, the IPv6 side terminated by the kernel (AnyIP local route)"
# Every address of the prefix is local to the router's kernel; haproxy
# accepts on [::]:80 and relays to the server, one thread, as a relay with
# the kernel's TCP on both sides would.
ip -n "$R" -6 route add local 2001:db8:49::/96 dev lo
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9000
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend relay
    bind [::]:80 v6only
    default_backend server
backend server
    server s $SERVER:80
EOF
ip netns exec "$R" haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
haproxy_pid=$!
for ((i = 0; i < 50; i++)); do
	timeout 5 ip netns exec "$C6" curl -gsSf --max-time 2 -o /dev/null "http://[2001:db8:49::c000:202]/" 2>/dev/null && break
	kill -0 "$haproxy_pid" 2>/dev/null || die "haproxy exited: $(cat "$TMP/haproxy.log")"
	sleep 0.1
done
MEASURE_PID=$haproxy_pid
wrk_run haproxy "$C6" "http://[2001:db8:49::c000:202]/" cps -H 'Connection: close'
wrk_run haproxy "$C6" "http://[2001:db8:49::c000:202]/" ka
stop_pid "$haproxy_pid" TERM 3
haproxy_pid=''

# faithif's own complaints during the run, if any (but the start-up notice
# that no access file is set), and the refused flows by reason.
LOG_WARN=$(cat "$TMP"/faithif-*.log | grep -E 'level=(WARN|ERROR)' | grep -v 'msg="no access rules' || true)
if [ -n "$LOG_WARN" ]; then
	info "faithif logged $(grep -c '' <<<"$LOG_WARN") warning/error line(s), e.g.:"
	head -n 5 <<<"$LOG_WARN" | sed 's/^/      /'
fi
REFUSED=$(grep -h 'msg="flow refused' "$TMP/faithif-run.log" | sed -n 's/.* reason=\([^ ]*\).*/\1/p' |
	sort | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }' || true)
info "faithif flows refused during its measurement and profiling runs, by reason: ${REFUSED:-none}"

#
# The table.
#
step "Results"
num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { # a b: a/b as 1.23×
	if num "$1" && num "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'
	else echo "—"; fi
}
ge() { num "$1" && num "$2" && awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN { exit !(a >= k * b) }'; } # a >= k*b
le() { num "$1" && num "$2" && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }              # a <= b
verdict() { if "$@"; then echo "met"; else echo "**not met**"; fi; }
fmt() { # value decimals
	if num "$1"; then awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; else echo "${1:-—}"; fi
}

k=kernel t=tayga f=faithif
TABLE=$TMP/table.md
{
	echo "| figure | kernel | TAYGA | faithif | faithif/TAYGA | faithif/kernel | target |"
	echo "|---|---:|---:|---:|---:|---:|---|"
	row() { # label key decimals target-text verdict
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "${RES[$k.$2]:-}" "$3")" \
			"$(fmt "${RES[$t.$2]:-}" "$3")" "$(fmt "${RES[$f.$2]:-}" "$3")" \
			"$(ratio "${RES[$f.$2]:-}" "${RES[$t.$2]:-}")" "$(ratio "${RES[$f.$2]:-}" "${RES[$k.$2]:-}")" "$4: $5"
	}
	one() { ge "${RES[$f.$1]:-}" "${RES[$t.$1]:-}" 3 && ge "${RES[$f.$1]:-}" "${RES[$k.$1]:-}" 0.6; }
	row "one stream server→client (Gbit/s)" s2c 2 "≥3× TAYGA and ≥0.6× kernel" "$(verdict one s2c)"
	row "one stream client→server (Gbit/s)" c2s 2 "≥3× TAYGA and ≥0.6× kernel" "$(verdict one c2s)"
	row "four streams server→client (Gbit/s)" s2c4 2 "≥4× TAYGA" \
		"$(verdict ge "${RES[$f.s2c4]:-}" "${RES[$t.s2c4]:-}" 4)"
	# both directions at once: "c2s / s2c", each direction at least a
	# third of the sum, and the sum at least 0.8× faithif's one stream.
	bidir() { # path
		if num "${RES[$1.bidir_c2s]:-}" && num "${RES[$1.bidir_s2c]:-}"; then
			printf '%s / %s' "$(fmt "${RES[$1.bidir_c2s]}" 2)" "$(fmt "${RES[$1.bidir_s2c]}" 2)"
		else echo "${RES[$1.bidir_c2s]:-—}"; fi
	}
	bidir_ok() {
		local a=${RES[$f.bidir_c2s]:-} b=${RES[$f.bidir_s2c]:-} one=${RES[$f.s2c]:-}
		num "$a" && num "$b" && num "$one" && awk -v a="$a" -v b="$b" -v o="$one" \
			'BEGIN { s = a + b; exit !(s > 0 && a >= s / 3 && b >= s / 3 && s >= 0.8 * o) }'
	}
	printf '| both directions at once, client→server / server→client (Gbit/s, iperf3 --bidir) | %s | %s | %s | | | each ≥ ⅓ of the sum, sum ≥ 0.8× one stream: %s |\n' \
		"$(bidir $k)" "$(bidir $t)" "$(bidir $f)" "$(verdict bidir_ok)"
	row "new connections/s (HTTP, Connection: close, 64 clients)" cps 0 "≥1× TAYGA (then 1.5×)" \
		"$(verdict ge "${RES[$f.cps]:-}" "${RES[$t.cps]:-}" 1)"
	printf '| CPU seconds per 1,000 new connections (the path'"'"'s own process) | — | %s | %s | %s | — | |\n' \
		"$(fmt "${RES[$t.cps_cpu]:-}" 3)" "$(fmt "${RES[$f.cps_cpu]:-}" 3)" "$(ratio "${RES[$f.cps_cpu]:-}" "${RES[$t.cps_cpu]:-}")"
	printf '| new-connection errors (wrk) | %s | %s | %s | | | none expected |\n' \
		"${RES[$k.cps_errs]:-—}" "${RES[$t.cps_errs]:-—}" "${RES[$f.cps_errs]:-—}"
	row "kept-alive requests/s (64 connections)" ka 0 "≥ TAYGA" "$(verdict ge "${RES[$f.ka]:-}" "${RES[$t.ka]:-}" 1)"
	row "kept-alive p99 latency (ms)" ka_p99 2 "≤ TAYGA" "$(verdict le "${RES[$f.ka_p99]:-}" "${RES[$t.ka_p99]:-}")"
	printf '| CPU seconds per 1,000 kept-alive requests (the path'"'"'s own process) | — | %s | %s | %s | — | |\n' \
		"$(fmt "${RES[$t.ka_cpu]:-}" 4)" "$(fmt "${RES[$f.ka_cpu]:-}" 4)" "$(ratio "${RES[$f.ka_cpu]:-}" "${RES[$t.ka_cpu]:-}")"
	printf '| kept-alive errors (wrk) | %s | %s | %s | | | none expected |\n' \
		"${RES[$k.ka_errs]:-—}" "${RES[$t.ka_errs]:-—}" "${RES[$f.ka_errs]:-—}"
	mem_ok() { num "${RES[$f.kib]:-}" && awk -v v="${RES[$f.kib]}" 'BEGIN { exit !(v <= 16) }' &&
		[ "${RES[$f.flows_open]:-0}" -eq "$IDLE" ] && [ "${RES[$f.held]:-0}" -eq "$IDLE" ]; }
	printf '| RSS per idle relayed connection (KiB, %s held) | — | %s | %s | — | — | ≤16 KiB/conn with all %s held: %s |\n' \
		"$IDLE" "$(fmt "${RES[$t.kib]:-}" 1)" "$(fmt "${RES[$f.kib]:-}" 1)" "$IDLE" "$(verdict mem_ok)"
	mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }
	printf '| RSS before → with the idle connections (MiB) | — | %s → %s | %s → %s | | | |\n' \
		"$(mib "${RES[$t.rss_before]:-}")" "$(mib "${RES[$t.rss_with]:-}")" \
		"$(mib "${RES[$f.rss_before]:-}")" "$(mib "${RES[$f.rss_with]:-}")"
	printf '| idle connections held: clients / server / faithif flows_open | — | %s / %s / — | %s / %s / %s | | | all %s |\n' \
		"${RES[$t.held]:-—}" "${RES[$t.srv_held]:-—}" "${RES[$f.held]:-—}" "${RES[$f.srv_held]:-—}" \
		"${RES[$f.flows_open]:-—}" "$IDLE"
} >"$TABLE"
echo
cat "$TABLE"

# The floor table: what a gVisor-terminating relay cannot beat here.
FLOOR_TABLE=$TMP/floor.md
{
	g=stackfloor p=gvisorfloor
	echo "| figure | TAYGA | faithif | faithif's stack alone | gVisor alone | haproxy, kernel-terminated | stack alone/TAYGA | gVisor alone/TAYGA | haproxy/TAYGA |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	frow() { # label key decimals
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "${RES[$t.$2]:-}" "$3")" "$(fmt "${RES[$f.$2]:-}" "$3")" \
			"$(fmt "${RES[$g.$2]:-}" "$3")" "$(fmt "${RES[$p.$2]:-}" "$3")" "$(fmt "${RES[haproxy.$2]:-}" "$3")" \
			"$(ratio "${RES[$g.$2]:-}" "${RES[$t.$2]:-}")" "$(ratio "${RES[$p.$2]:-}" "${RES[$t.$2]:-}")" \
			"$(ratio "${RES[haproxy.$2]:-}" "${RES[$t.$2]:-}")"
	}
	frow "new connections/s" cps 0
	frow "CPU seconds per 1,000 new connections (the path's own process)" cps_cpu 3
	frow "kept-alive requests/s" ka 0
	frow "kept-alive p99 latency (ms)" ka_p99 2
	frow "CPU seconds per 1,000 kept-alive requests (the path's own process)" ka_cpu 4
	printf '| wrk errors, new connections / kept-alive | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | | | |\n' \
		"${RES[$t.cps_errs]:-—}" "${RES[$t.ka_errs]:-—}" "${RES[$f.cps_errs]:-—}" "${RES[$f.ka_errs]:-—}" \
		"${RES[$g.cps_errs]:-—}" "${RES[$g.ka_errs]:-—}" "${RES[$p.cps_errs]:-—}" "${RES[$p.ka_errs]:-—}" \
		"${RES[haproxy.cps_errs]:-—}" "${RES[haproxy.ka_errs]:-—}"
} >"$FLOOR_TABLE"
echo
cat "$FLOOR_TABLE"

runtime=$(($(date +%s) - t_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=''
if [ -n "$(git status --porcelain -- cmd faithif stack relay go.mod go.sum 2>/dev/null)" ]; then
	dirty=" (with uncommitted changes in cmd/, faithif/, stack/, relay/ or go.mod)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cores=$(nproc)
kernel=$(uname -r)
date_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
ver_iperf=$( (iperf3 --version 2>&1 || true) | awk 'NR == 1 { print $2 }')
ver_wrk=$( (wrk --version 2>&1 || true) | awk 'NR == 1 { print $2 }')
ver_nginx=$( (nginx -v 2>&1 || true) | sed -n '1s/.*nginx\///p')
ver_tayga=$(dpkg-query -W -f '${Version}' tayga 2>/dev/null || echo unknown)
ver_haproxy=$( (haproxy -v 2>&1 || true) | awk 'NR == 1 { print $3 }')

echo
echo "machine: $cpu, $cores cores; kernel $kernel; $date_utc; faithif $commit$dirty; runtime ${runtime}s"
echo "load average at the start: $load_start; at the end: $load_end"
if [ ${#FAILURES[@]} -gt 0 ]; then
	echo
	echo "Failed measurements:"
	printf '  - %s\n' "${FAILURES[@]}"
fi

if [ "$OUT" != - ]; then
	{
		echo "# Benchmarks"
		echo
		echo "Written by \`make bench\` (test/bench/bench.sh); run it again to refresh this file."
		echo
		echo "| | |"
		echo "|---|---|"
		echo "| command | \`make bench\` |"
		echo "| date | $date_utc |"
		echo "| faithif commit | \`$commit\`$dirty |"
		echo "| CPU | $cpu, $cores cores |"
		echo "| kernel | $kernel |"
		echo "| tools | iperf3 $ver_iperf, wrk $ver_wrk, nginx $ver_nginx, TAYGA $ver_tayga, haproxy $ver_haproxy |"
		echo "| runtime | ${runtime} s |"
		echo
		echo "## Results"
		echo
		cat "$TABLE"
		echo
		cat <<EOF
Each figure is the median of $REPEAT back-to-back runs. Throughput is iperf3's
receiver figure (\`-t $DUR -O 1\`). Requests/s, p99 and errors are wrk's
(\`-t2 -c64 -d${DUR}s\`; with \`-H 'Connection: close'\` every request is a new
TCP connection). wrk's errors are its socket errors (connect, read, write,
timeout) plus non-2xx answers, summed over the runs; "none" means wrk reported
none. RSS is VmRSS from /proc/PID/status of the faithif or tayga process, just
before and ${SETTLE} s after the idle connections are all open.
EOF
		echo
		if [ ${#FAILURES[@]} -gt 0 ]; then
			echo "Failed measurements:"
			echo
			printf -- '- %s\n' "${FAILURES[@]}"
			echo
		fi
		cat <<EOF
## The floor of a relay that terminates flows in gVisor

The same wrk runs against two responders built from \`test/bench/floor\`, in
the router, with nothing behind them: every flow is terminated and answered
(the same 1 KiB page, \`Connection: close\` honoured as nginx does) by the
program itself, with no relay, no access check, no IPv4 socket and no nginx.
"faithif's stack alone" is faithif's own \`stack\` package (TUN, link
endpoint, flow table, gVisor); "gVisor alone" is gVisor as its examples set
it up (its \`fdbased\` link endpoint on the TUN, its TCP forwarder, \`gonet\`).
TAYGA's and faithif's figures above include the IPv4 leg and nginx's work;
these do not, so they are an upper bound for any relay built on gVisor on
this machine. For what a relay whose IPv6 side is terminated by the kernel
reaches, haproxy $ver_haproxy (TCP mode, one thread) relays the same requests
to the same nginx from an AnyIP local route (\`ip -6 route add local
2001:db8:49::/96 dev lo\` in the router, haproxy on \`[::]:80\`). CPU is the
process's own (tayga, faithif, floor, haproxy), as in the table above.

EOF
		cat "$FLOOR_TABLE"
		echo
		echo "Every run (the table shows the median of $REPEAT):"
		echo
		echo "| figure | kernel | TAYGA | faithif | faithif's stack alone | gVisor alone | haproxy |"
		echo "|---|---|---|---|---|---|---|"
		for pair in "s2c:one stream server→client (Gbit/s)" "c2s:one stream client→server (Gbit/s)" \
			"s2c4:four streams server→client (Gbit/s)" "cps:new connections/s" \
			"bidir_c2s:both directions at once, client→server (Gbit/s)" \
			"bidir_s2c:both directions at once, server→client (Gbit/s)" \
			"ka:kept-alive requests/s" "ka_p99:kept-alive p99 (ms)"; do
			key=${pair%%:*}
			printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${pair#*:}" "${RES[$k.${key}_runs]:-—}" \
				"${RES[$t.${key}_runs]:-—}" "${RES[$f.${key}_runs]:-—}" \
				"${RES[stackfloor.${key}_runs]:-—}" "${RES[gvisorfloor.${key}_runs]:-—}" "${RES[haproxy.${key}_runs]:-—}"
		done
		printf '| requests in the new-connection runs | %s | %s | %s | %s | %s | %s |\n' "${RES[$k.cps_n]:-—}" "${RES[$t.cps_n]:-—}" "${RES[$f.cps_n]:-—}" "${RES[stackfloor.cps_n]:-—}" "${RES[gvisorfloor.cps_n]:-—}" "${RES[haproxy.cps_n]:-—}"
		printf '| requests in the kept-alive runs | %s | %s | %s | %s | %s | %s |\n' "${RES[$k.ka_n]:-—}" "${RES[$t.ka_n]:-—}" "${RES[$f.ka_n]:-—}" "${RES[stackfloor.ka_n]:-—}" "${RES[gvisorfloor.ka_n]:-—}" "${RES[haproxy.ka_n]:-—}"
		echo
		echo "Load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end."
		echo
		echo "faithif's counters after its measurements (\`faithif show faith0\`):"
		echo
		echo '```'
		cat "$TMP/faithif-show.txt" 2>/dev/null || echo "(not available)"
		echo '```'
		echo
		if [ -n "$LOG_WARN" ]; then
			echo "faithif logged $(grep -c '' <<<"$LOG_WARN") warning/error line(s), the first ones:"
			echo
			echo '```'
			head -n 10 <<<"$LOG_WARN"
			echo '```'
		else
			echo "faithif logged no warnings or errors (but the start-up notice that no access file is set)."
		fi
		echo
		echo "Flows faithif refused during its measurement and profiling runs (from its log), by"
		echo "reason: ${REFUSED:-none}. (\`client-gone\` is a client that went away while its server"
		echo "connection was being set up, as wrk does to its connections in flight when a run ends.)"
		echo
		cat <<EOF
## Method

One namespace lab, one run, the three paths one after another (only the
path being measured is running), the same client tools and the same server:

\`\`\`
client4 (IPv4 only)  198.51.100.2/24 ---- 198.51.100.1/24
                                          router (forwarding on)
client6 (IPv6 only)  2001:db8:1::2/64 --- 2001:db8:1::1/64
                                          192.0.2.1/24 ---- 192.0.2.2/24  server (IPv4 only)
                                          nat64: TAYGA      nginx :80, iperf3 -s,
                                          faith0: faithif   connhold (idle holder)
\`\`\`

- **kernel**: client4 to 192.0.2.2, IPv4 routed by the router's kernel.
- **TAYGA**: client6 to \`$NAT64_ADDR\`: TAYGA $ver_tayga in the router,
  prefix \`$NAT64_PREFIX\`, dynamic pool \`$TAYGA_POOL\`, on its \`nat64\` TUN.
- **faithif**: client6 to \`$FAITH_ADDR\`: \`faithif create faith0 --prefix
  $FAITH_PREFIX --keepfaith --route -f --max-flows-per-client 20000
  --max-handshakes-per-client 1024 --max-flows-per-address 20000
  --max-handshakes-per-address 1024\` in the router (one client address
  holds the 15,000 idle connections).

The server runs nginx (one worker, a 1 KiB index.html, keep-alive, access
log off), iperf3 servers, and two \`test/bench/connhold\` holders that
accept connections and keep them idle. All veths have MTU 1500. Every
namespace has \`ip_local_port_range 1024 65535\` and \`tcp_tw_reuse=1\`.

- one stream: \`iperf3 -c ADDR -t $DUR -O 1 -R\` (server to client) and without \`-R\`.
- four streams: \`iperf3 -c ADDR -t $DUR -O 1 -R -P 4\`.
- both directions at once: \`iperf3 -c ADDR -t $DUR -O 1 --bidir\` (two connections, one each way).
- CPU per 1,000 requests: the utime + stime of the path's own process (tayga, faithif; /proc/PID/stat) over all wrk runs of the figure, divided by their requests.
- new connections/s: \`wrk -t2 -c64 -d${DUR}s --latency -H 'Connection: close' http://ADDR/\`.
- kept-alive requests/s and p99: \`wrk -t2 -c64 -d${DUR}s --latency http://ADDR/\`.
- idle memory: $IDLE connections from client6 through the path (4
  processes, 32 dials in flight each) to the holders, kept open idle. For
  faithif a fresh instance is started for this (so earlier runs do not
  inflate the baseline); RSS per connection = (RSS with - RSS before) / $IDLE,
  and all must be held: every client connect succeeded, the server holds
  them, and \`faithif show faith0 --json\` says \`flows_open\` = $IDLE.
  TAYGA keeps no per-connection state (one address mapping per client), so
  its figure is only for comparison.

Everything shares the machine's $cores cores: clients, server, and the
translator under test.
EOF
		if [ ${#PROFILES[@]} -gt 0 ]; then
			echo
			echo "## Where faithif spends its CPU"
			echo
			echo "\`perf record -F 499 -p PID -- sleep $DUR\` on the faithif process (user and"
			echo "kernel time in its threads) during one extra run of the load, not counted in the"
			echo "table; \`perf report --sort dso\` and \`--sort dso,symbol\`."
			if grep -q '^event: cpu-clock' <<<"${PROFILES[*]}"; then
				echo "The event is the software cpu-clock (no hardware PMU here, e.g. a VM): samples"
				echo "pile up where interrupts are enabled again (\`_raw_spin_unlock_irqrestore\`,"
				echo "\`finish_task_switch\`)."
			fi
			for key in s2c cps; do
				[ -n "${PROFILES[$key]:-}" ] || continue
				echo
				echo "### ${PROFILE_LABELS[$key]}"
				echo
				echo '```'
				echo "${PROFILES[$key]}"
				echo '```'
			done
		fi
		# The engineers' reading of the figures, kept across runs.
		if [ -f test/bench/analysis.md ]; then
			echo
			cat test/bench/analysis.md
		fi
	} >"$OUT"
	info "wrote $OUT"
fi

if [ ${#FAILURES[@]} -gt 0 ]; then
	die "${#FAILURES[@]} measurement(s) failed (see above)"
fi
step "Done in ${runtime}s"
