# shellcheck shell=bash
# The namespace lab of the shell scripts (test/scripts/demo.sh,
# test/bench/bench.sh), written once. Source it from the repository root:
#
#   . test/scripts/lab.sh
#
# Each script builds its own topology from these pieces: namespaces by role,
# veth pairs with addresses, nginx, faithif; and tears it down in its own
# cleanup with stop_pid and lab_del_namespaces. Names must be unique per
# run: the scripts prefix their namespaces with their pid ($$), and
# lab_tmpdir makes a fresh directory.
#
# Globals the scripts set (before the first call that uses them):
#   LAB_DIE_FORMAT  printf format of die's message, e.g. 'demo: %s'
#                   (default '%s')
#   LAB_T0          seconds since the epoch; if set, step shows the time since
# Globals this file keeps:
#   LAB_TMP         the run's scratch directory (lab_tmpdir)
#   LAB_NAMESPACES  the namespaces created so far (lab_netns), for cleanup
#   LAB_LINKS       the veth ends made so far, "NS DEV V6" (lab_veth), for
#                   lab_wait_links
#   nginx_pid       nginx's pid (lab_start_nginx)
#   unbound_pid     the name server's pid (lab_start_nameserver)
#   faithif_pid     faithif's pid (lab_start_faithif)
#   LAB_ETC_NETNS   the /etc/netns/NS directories made (lab_resolver)
#
# Messages:
#   step TEXT...       "==> TEXT" after a blank line ("==> [ 12s] TEXT" with LAB_T0)
#   info TEXT...       an indented detail line
#   die TEXT...        TEXT on stderr (in LAB_DIE_FORMAT), exit 1
# Checks:
#   lab_check_root               dies unless run as root
#   lab_check_tools HINT TOOL... dies at the first TOOL not on PATH, with HINT
# Waiting and stopping:
#   lab_wait TRIES PAUSE NAME PID LOG CMD...
#                      runs CMD until it succeeds, at most TRIES times PAUSE
#                      seconds apart; returns 1 if it never did. If PID (may be
#                      '') ends meanwhile, dies with "NAME exited: " and LOG.
#   stop_pid PID SIGNAL SECONDS
#                      sends SIGNAL to PID (if running), waits up to SECONDS
#                      for it to end, then SIGKILL; reaps it
# The lab:
#   lab_tmpdir NAME    makes LAB_TMP, /tmp/faithif-NAME.XXXXXX, mode 755
#   lab_netns NS ROLE  creates namespace NS (added to LAB_NAMESPACES) with its
#                      loopback up; ROLE: ipv6 (an IPv6 host, no DAD), router
#                      (no DAD, IPv6 forwarding) or ipv4 (IPv6 disabled)
#   lab_sysctl NS KEY=VALUE...   sets kernel parameters in NS
#   lab_veth NS1 DEV1 ADDR1 NS2 DEV2 ADDR2
#                      a veth pair DEV1 in NS1 -- DEV2 in NS2, made inside the
#                      namespaces; each end gets its address (IPv6 without
#                      DAD), is set up and added to LAB_LINKS
#   lab_wait_links     waits up to 5 s for every end in LAB_LINKS to be up,
#                      with a usable link-local address if it has IPv6
#   lab_del_namespaces deletes the namespaces in LAB_NAMESPACES, and the
#                      /etc/netns/NS directories of lab_resolver
#   lab_resolver NS ADDR
#                      makes ADDR the only name server of commands run in NS
#                      with "ip netns exec", which mounts
#                      /etc/netns/NS/resolv.conf over /etc/resolv.conf
# Servers:
#   lab_start_nginx NS LISTEN CONNECTIONS ACCESS_LOG [MAIN [HTTP]]
#                      starts nginx in NS in the background (nginx_pid), one
#                      worker serving LAB_TMP/www (the caller puts
#                      index.html there) on LISTEN ("ADDR:PORT [options]"),
#                      with worker_connections CONNECTIONS, ACCESS_LOG (a
#                      file or "off"), and any extra directives for the main
#                      and http contexts; its files are in LAB_TMP/nginx
#                      (error.log for the NAME exited message of lab_wait)
#   lab_start_nameserver NS ADDR ZONE RECORD...
#                      starts unbound in NS (unbound_pid) answering on ADDR:53
#                      for the local zone ZONE with the RECORDs ("NAME TTL IN
#                      TYPE DATA"), to clients of ADDR's /24; its files are in
#                      LAB_TMP/unbound; waits up to 10 s for it to serve
#   lab_start_faithif NS RUN_DIR BIN LOG ARGS...
#                      runs "BIN ARGS..." in NS (FAITHIF_RUN_DIR=RUN_DIR,
#                      stderr to LOG) in the background (faithif_pid) and
#                      waits up to 10 s for its msg=ready
#   lab_faithif NS RUN_DIR BIN ARGS...   runs a faithif command in NS

export PATH=$PATH:/usr/sbin:/sbin

LAB_TMP=''
LAB_NAMESPACES=()
LAB_LINKS=()
LAB_ETC_NETNS=()
nginx_pid='' unbound_pid='' faithif_pid=''

step() {
	if [ -n "${LAB_T0:-}" ]; then
		printf '\n==> [%3ds] %s\n' "$(($(date +%s) - LAB_T0))" "$*"
	else
		printf '\n==> %s\n' "$*"
	fi
}

info() { printf '    %s\n' "$*"; }

die() {
	# shellcheck disable=SC2059 # the format is the script's
	printf "${LAB_DIE_FORMAT:-%s}\n" "$*" >&2
	exit 1
}

lab_check_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
}

lab_check_tools() {
	local hint=$1 tool
	shift
	for tool; do
		command -v "$tool" >/dev/null || die "$tool not found: $hint"
	done
}

lab_wait() {
	local tries=$1 pause=$2 name=$3 pid=$4 log=$5 i
	shift 5
	for ((i = 1; i <= tries; i++)); do
		"$@" && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			die "$name exited: $(cat "$log" 2>/dev/null)"
		fi
		[ "$i" -eq "$tries" ] || sleep "$pause"
	done
	return 1
}

stop_pid() {
	local pid=$1 sig=$2 secs=$3 i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

lab_tmpdir() {
	LAB_TMP=$(mktemp -d "/tmp/faithif-$1.XXXXXX")
	chmod 755 "$LAB_TMP"
}

lab_netns() {
	local ns=$1 role=$2
	ip netns add "$ns" || die "ip netns add $ns"
	LAB_NAMESPACES+=("$ns")
	ip -n "$ns" link set lo up
	case $role in
	ipv6) lab_sysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 ;;
	router)
		lab_sysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.all.forwarding=1
		;;
	ipv4) lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 ;;
	*) die "lab_netns $ns: unknown role $role" ;;
	esac
}

lab_sysctl() {
	local ns=$1
	shift
	ip netns exec "$ns" sysctl -qw "$@"
}

lab_veth() {
	ip -n "$1" link add "$2" type veth peer name "$5" netns "$4"
	lab_veth_end "$1" "$2" "$3"
	lab_veth_end "$4" "$5" "$6"
}

# lab_veth_end NS DEV ADDR: one end of lab_veth.
lab_veth_end() {
	local v6=0 opts=()
	case $3 in *:*) v6=1 opts=(nodad) ;; esac
	ip -n "$1" addr add "$3" dev "$2" "${opts[@]}"
	ip -n "$1" link set "$2" up
	LAB_LINKS+=("$1 $2 $v6")
}

# Carrier, and usable link-local addresses where there is IPv6: without
# them the first neighbor solicitation can be lost and the first connection
# then takes a second.
lab_wait_links() {
	lab_wait 100 0.05 '' '' '' lab_links_ready || die "veth links not up after 5 s"
}

# lab_links_ready: whether every end in LAB_LINKS is ready.
lab_links_ready() {
	local end ns dev v6
	for end in "${LAB_LINKS[@]}"; do
		read -r ns dev v6 <<<"$end"
		ip -n "$ns" -o link show dev "$dev" | grep -q 'state UP' || return 1
		[ "$v6" = 0 ] && continue
		ip -n "$ns" -o -6 addr show dev "$dev" scope link | grep -v tentative | grep -q fe80: || return 1
	done
}

lab_del_namespaces() {
	local ns dir
	for ns in "${LAB_NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
	for dir in "${LAB_ETC_NETNS[@]}"; do rm -rf "$dir"; done
	return 0
}

lab_start_nginx() {
	local ns=$1 listen=$2 conns=$3 access_log=$4 main=${5:-} http=${6:-} dir=$LAB_TMP/nginx group=nogroup
	mkdir -p "$LAB_TMP/www" "$dir"
	chmod -R a+rX "$LAB_TMP/www"
	getent group nogroup >/dev/null || group=nobody
	cat >"$dir/nginx.conf" <<EOF
user nobody $group;
worker_processes 1;
${main}
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections $conns; }
http {
    access_log $access_log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    types { text/html html; }
    default_type text/plain;
    ${http}
    server {
        listen $listen;
        root $LAB_TMP/www;
        index index.html;
    }
}
EOF
	ip netns exec "$ns" nginx -p "$dir" -c "$dir/nginx.conf" &
	nginx_pid=$!
}

lab_resolver() {
	local dir=/etc/netns/$1
	mkdir -p "$dir"
	LAB_ETC_NETNS+=("$dir")
	printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$2" >"$dir/resolv.conf"
}

lab_start_nameserver() {
	local ns=$1 addr=$2 zone=$3 dir=$LAB_TMP/unbound rr
	shift 3
	mkdir -p "$dir"
	{
		cat <<EOF
server:
    interface: $addr
    port: 53
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$dir"
    pidfile: "$dir/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    do-ip6: no
    access-control: ${addr%.*}.0/24 allow
    local-zone: "$zone" static
EOF
		for rr; do printf '    local-data: "%s"\n' "$rr"; done
		printf 'remote-control:\n    control-enable: no\n'
	} >"$dir/unbound.conf"
	ip netns exec "$ns" unbound -d -c "$dir/unbound.conf" 2>"$dir/unbound.log" &
	unbound_pid=$!
	lab_wait 100 0.1 unbound "$unbound_pid" "$dir/unbound.log" grep -qs 'start of service' "$dir/unbound.log" ||
		die "unbound not serving after 10 s: $(cat "$dir/unbound.log")"
}

lab_start_faithif() {
	local ns=$1 run_dir=$2 bin=$3 log=$4
	shift 4
	mkdir -p "$run_dir"
	ip netns exec "$ns" env FAITHIF_RUN_DIR="$run_dir" "$bin" "$@" 2>"$log" &
	faithif_pid=$!
	lab_wait 100 0.1 faithif "$faithif_pid" "$log" grep -qs 'msg=ready' "$log" ||
		die "faithif not ready after 10 s: $(cat "$log")"
}

lab_faithif() {
	local ns=$1 run_dir=$2 bin=$3
	shift 3
	ip netns exec "$ns" env FAITHIF_RUN_DIR="$run_dir" "$bin" "$@"
}
