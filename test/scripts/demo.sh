#!/usr/bin/env bash
# faithif demo: an IPv6-only client fetches a web page by name from an
# IPv4-only nginx through faithif, in a throwaway three-namespace lab:
#
#   client (IPv6 only)       router (faithif)              server (IPv4 only)
#   2001:db8:1::2/64  <--->  2001:db8:1::1/64, DNS64 :53
#   resolver: the router     192.0.2.1/24          <--->   192.0.2.2/24, nginx :80,
#                            faith0: 2001:db8:46::/96        name server :53
#
# The client's only resolver is faithif's DNS64 on the router, which asks the
# IPv4 name server and answers www.demo.example with 2001:db8:46::c000:202
# (192.0.2.2 embedded in the FAITH prefix); the client fetches
# http://www.demo.example/. Everything is removed on exit, even on failure.
# Needs root, ip, curl, nginx and unbound (make deps). Exits non-zero if the
# fetch fails. The lab's pieces (namespaces, veths, nginx, the name server,
# faithif) are in lab.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/scripts/lab.sh
LAB_DIE_FORMAT='demo: %s'

BIN=${FAITHIF_BIN:-$PWD/bin/faithif}
PREFIX=2001:db8:46::/96
NAME=www.demo.example
URL="http://$NAME/"

lab_check_root
[ -x "$BIN" ] || die "$BIN not found: run 'make build' first"
lab_check_tools "run 'make deps'" ip curl nginx unbound

id=fidemo$$
C=${id}c R=${id}r S=${id}s
lab_tmpdir demo
TMP=$LAB_TMP
RUN_DIR=$TMP/run
FAITHIF_LOG=$TMP/faithif.log

cleanup() {
	status=$?
	set +e
	trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
	step "Cleaning up"
	stop_pid "$faithif_pid" TERM 5
	stop_pid "$nginx_pid" QUIT 5
	stop_pid "$unbound_pid" TERM 5
	lab_del_namespaces
	rm -rf "$TMP"
	echo "removed namespaces $C $R $S and $TMP"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fi_cmd() { lab_faithif "$R" "$RUN_DIR" "$BIN" "$@"; }

step "Creating namespaces: client $C (IPv6 only), router $R, server $S (IPv4 only)"
lab_netns "$C" ipv6
lab_netns "$R" router
lab_netns "$S" ipv4

step "Wiring them with veth pairs and documentation addresses"
lab_veth "$R" rc0 2001:db8:1::1/64 "$C" c0 2001:db8:1::2/64
lab_veth "$R" rs0 192.0.2.1/24 "$S" s0 192.0.2.2/24
ip -n "$C" -6 route add default via 2001:db8:1::1 dev c0
ip -n "$S" -4 route add default via 192.0.2.1 dev s0
lab_wait_links
echo "client 2001:db8:1::2 -> router 2001:db8:1::1 | 192.0.2.1 -> server 192.0.2.2"

step "Starting an IPv4-only nginx on 192.0.2.2:80 in $S"
mkdir -p "$TMP/www"
cat >"$TMP/www/index.html" <<'HTML'
<!DOCTYPE html>
<html><head><title>faithif demo</title></head>
<body><p>Hello from the IPv4-only server 192.0.2.2, reached over IPv6 through faithif.</p></body>
</html>
HTML
lab_start_nginx "$S" 192.0.2.2:80 64 "$TMP/nginx/access.log"
lab_wait 50 0.1 nginx "$nginx_pid" "$TMP/nginx/error.log" \
	ip netns exec "$S" curl -sf -o /dev/null --max-time 1 http://192.0.2.2/ ||
	die "nginx not answering on 192.0.2.2:80"
echo "nginx is up (pid $nginx_pid)"

step "Starting the IPv4 namespace's name server (unbound) on 192.0.2.2:53: $NAME is 192.0.2.2"
lab_start_nameserver "$S" 192.0.2.2 demo.example. "$NAME. 300 IN A 192.0.2.2" \
	"loopback.demo.example. 300 IN A 127.0.0.1"
echo "name server is up (pid $unbound_pid)"

step "Starting faithif in $R with its DNS64 on the router's address"
echo "faithif create faith0 --prefix $PREFIX --dns64 [2001:db8:1::1]:53 --dns64-upstream 192.0.2.2 -f"
lab_start_faithif "$R" "$RUN_DIR" "$BIN" "$FAITHIF_LOG" create faith0 --prefix "$PREFIX" \
	--dns64 '[2001:db8:1::1]:53' --dns64-upstream 192.0.2.2 -f
echo "faithif is ready (pid $faithif_pid)"

step "Turning capture on: faithif sysctl net.inet6.ip6.keepfaith=1"
fi_cmd sysctl net.inet6.ip6.keepfaith=1

step "Routing $PREFIX to faith0 in the router"
ip -n "$R" -6 route replace "$PREFIX" dev faith0
ip -n "$R" -6 route show "$PREFIX"

step "The client's only resolver is the router: nameserver 2001:db8:1::1"
lab_resolver "$C" 2001:db8:1::1
cat "/etc/netns/$C/resolv.conf"

step "Resolving $NAME from the client (getent ahostsv6)"
ip netns exec "$C" getent ahostsv6 "$NAME" || die "$NAME does not resolve from the client"
echo "(loopback.demo.example is 127.0.0.1, which faith0 never relays: no IPv6 address for it)"
if ip netns exec "$C" getent ahostsv6 loopback.demo.example | grep -q '2001:db8:46::'; then
	die "loopback.demo.example got a FAITH address"
fi

ready_lines=$(grep -c '' "$FAITHIF_LOG" || true)

step "Fetching $URL from the IPv6-only client"
if ! page=$(ip netns exec "$C" curl -gsS --max-time 10 "$URL"); then
	echo "demo: FETCH FAILED" >&2
	echo "--- faithif log:" >&2
	cat "$FAITHIF_LOG" >&2
	fi_cmd show faith0 >&2 || true
	exit 1
fi
echo "$page"

sleep 0.3 # let the relay log the end of the flow
step "faithif log lines for the flow"
tail -n +"$((ready_lines + 1))" "$FAITHIF_LOG"

step "faithif show faith0"
fi_cmd show faith0

step "Done: the IPv6-only client found the IPv4-only server by name and talked to it through faithif"
