#!/usr/bin/env bash
# faithif demo: an IPv6-only client fetches a web page from an IPv4-only
# nginx through faithif, in a throwaway three-namespace lab:
#
#   client (IPv6 only)       router (faithif)              server (IPv4 only)
#   2001:db8:1::2/64  <--->  2001:db8:1::1/64
#                            192.0.2.1/24          <--->   192.0.2.2/24, nginx :80
#                            faith0: 2001:db8:46::/96
#
# The client fetches http://[2001:db8:46::c000:202]/ (192.0.2.2 embedded in
# the FAITH prefix). Everything is removed on exit, even on failure.
# Needs root, ip, curl and nginx (make deps). Exits non-zero if the fetch fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/sbin:/sbin

BIN=${FAITHIF_BIN:-$PWD/bin/faithif}
PREFIX=2001:db8:46::/96
URL='http://[2001:db8:46::c000:202]/'

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
[ -x "$BIN" ] || die "$BIN not found: run 'make build' first"
for tool in ip curl nginx; do
	command -v "$tool" >/dev/null || die "$tool not found: run 'make deps'"
done

id=fidemo$$
C=${id}c R=${id}r S=${id}s
TMP=$(mktemp -d /tmp/faithif-demo.XXXXXX)
chmod 755 "$TMP"
RUN_DIR=$TMP/run
FAITHIF_LOG=$TMP/faithif.log
faithif_pid= nginx_pid=

cleanup() {
	status=$?
	set +e
	step "Cleaning up"
	if [ -n "$faithif_pid" ] && kill -0 "$faithif_pid" 2>/dev/null; then
		kill -TERM "$faithif_pid"
		for _ in $(seq 50); do kill -0 "$faithif_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$faithif_pid" 2>/dev/null
		wait "$faithif_pid" 2>/dev/null
	fi
	if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
		kill -QUIT "$nginx_pid"
		for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$nginx_pid" 2>/dev/null
		wait "$nginx_pid" 2>/dev/null
	fi
	for ns in "$C" "$R" "$S"; do
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
	echo "removed namespaces $C $R $S and $TMP"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fi_cmd() { ip netns exec "$R" env FAITHIF_RUN_DIR="$RUN_DIR" "$BIN" "$@"; }

step "Creating namespaces: client $C (IPv6 only), router $R, server $S (IPv4 only)"
for ns in "$C" "$R" "$S"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip netns exec "$C" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip netns exec "$R" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
	net.ipv6.conf.all.forwarding=1
ip netns exec "$S" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1

step "Wiring them with veth pairs and documentation addresses"
ip -n "$R" link add rc0 type veth peer name c0 netns "$C"
ip -n "$R" link add rs0 type veth peer name s0 netns "$S"
ip -n "$C" addr add 2001:db8:1::2/64 dev c0 nodad
ip -n "$R" addr add 2001:db8:1::1/64 dev rc0 nodad
ip -n "$R" addr add 192.0.2.1/24 dev rs0
ip -n "$S" addr add 192.0.2.2/24 dev s0
ip -n "$C" link set c0 up
ip -n "$R" link set rc0 up
ip -n "$R" link set rs0 up
ip -n "$S" link set s0 up
ip -n "$C" -6 route add default via 2001:db8:1::1 dev c0
ip -n "$S" -4 route add default via 192.0.2.1 dev s0
# Wait for carrier and usable link-local addresses, or the first neighbor
# solicitation can be lost and the first connection then takes a second.
link_ready() { # ns dev ipv6
	ip -n "$1" -o link show dev "$2" | grep -q 'state UP' || return 1
	[ "$3" = 0 ] && return 0
	ip -n "$1" -o -6 addr show dev "$2" scope link | grep -v tentative | grep -q fe80:
}
for i in $(seq 100); do
	if link_ready "$C" c0 1 && link_ready "$R" rc0 1 && link_ready "$R" rs0 0 && link_ready "$S" s0 0; then break; fi
	[ "$i" -lt 100 ] || die "veth links not up after 5 s"
	sleep 0.05
done
echo "client 2001:db8:1::2 -> router 2001:db8:1::1 | 192.0.2.1 -> server 192.0.2.2"

step "Starting an IPv4-only nginx on 192.0.2.2:80 in $S"
mkdir -p "$TMP/www" "$TMP/nginx"
cat >"$TMP/www/index.html" <<'HTML'
<!DOCTYPE html>
<html><head><title>faithif demo</title></head>
<body><p>Hello from the IPv4-only server 192.0.2.2, reached over IPv6 through faithif.</p></body>
</html>
HTML
chmod -R a+rX "$TMP/www"
group=nogroup
getent group nogroup >/dev/null || group=nobody
cat >"$TMP/nginx/nginx.conf" <<EOF
user nobody $group;
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 64; }
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    types { text/html html; }
    default_type text/plain;
    server {
        listen 192.0.2.2:80;
        root $TMP/www;
        index index.html;
    }
}
EOF
ip netns exec "$S" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
nginx_pid=$!
for i in $(seq 50); do
	if ip netns exec "$S" curl -sf -o /dev/null --max-time 1 http://192.0.2.2/; then break; fi
	kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited: $(cat "$TMP/nginx/error.log" 2>/dev/null)"
	[ "$i" -lt 50 ] || die "nginx not answering on 192.0.2.2:80"
	sleep 0.1
done
echo "nginx is up (pid $nginx_pid)"

step "Starting faithif in $R: faithif create faith0 --prefix $PREFIX -f"
mkdir -p "$RUN_DIR"
ip netns exec "$R" env FAITHIF_RUN_DIR="$RUN_DIR" "$BIN" create faith0 --prefix "$PREFIX" -f 2>"$FAITHIF_LOG" &
faithif_pid=$!
for i in $(seq 100); do
	if grep -q 'msg=ready' "$FAITHIF_LOG" 2>/dev/null; then break; fi
	kill -0 "$faithif_pid" 2>/dev/null || die "faithif exited: $(cat "$FAITHIF_LOG")"
	[ "$i" -lt 100 ] || die "faithif not ready after 10 s: $(cat "$FAITHIF_LOG")"
	sleep 0.1
done
echo "faithif is ready (pid $faithif_pid)"

step "Turning capture on: faithif sysctl net.inet6.ip6.keepfaith=1"
fi_cmd sysctl net.inet6.ip6.keepfaith=1

step "Routing $PREFIX to faith0 in the router"
ip -n "$R" -6 route replace "$PREFIX" dev faith0
ip -n "$R" -6 route show "$PREFIX"

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

step "Done: the IPv6-only client talked to the IPv4-only server through faithif"
