#!/usr/bin/env bash
# Installs the system packages that the tests and the demo need, but only
# those that are missing; quick and silent when everything is there.
#   ip (iproute2), curl, nginx (nginx-light or nginx), setpriv and unshare
#   (util-linux), mount, sysctl (procps), gcc and libc headers (go test -race),
#   promtool (prometheus; its server is not started), unbound (the DNS64
#   interoperability test and the demo run their own; the system's service is
#   not started), and for the installation test (test/e2e/install_test.go)
#   systemd-analyze (systemd), man (man-db), groff (groff-base) and zsh;
#   vsftpd and lftp (the FTP relay's end-to-end test; the system vsftpd is
#   not started).
# With --bench (make bench) also the benchmark tools: tayga, iperf3, wrk,
# haproxy.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

have() { command -v "$1" >/dev/null 2>&1; }

need=()
have ip || need+=(iproute2)
have curl || need+=(curl)
have setpriv && have unshare || need+=(util-linux)
have mount || need+=(mount)
have sysctl || need+=(procps)
have gcc || need+=(gcc)
[ -e /usr/include/stdlib.h ] || need+=(libc6-dev)
have promtool || need+=(prometheus) # promtool check metrics (test/e2e/metrics_test.go)
have systemd-analyze || need+=(systemd)
have man || need+=(man-db)
have groff || need+=(groff-base)
have zsh || need+=(zsh)
have unbound || need+=(unbound)     # test/e2e/dns64_test.go, the demo's name server
have vsftpd || need+=(vsftpd)       # the IPv4 FTP server of test/e2e/ftp_test.go
have lftp || need+=(lftp)           # an FTP client there, beside curl

# The benchmark's tools (test/bench/bench.sh), only when asked for: make test
# does not need them.
bench_deps() {
	have tayga || need+=(tayga)
	have iperf3 || need+=(iperf3)
	have wrk || need+=(wrk)
	have haproxy || need+=(haproxy)
}
case "${1:-}" in
"") ;;
--bench) bench_deps ;;
*)
	echo "usage: install-deps.sh [--bench]" >&2
	exit 2
	;;
esac
nginx_missing=0
have nginx || nginx_missing=1

if [ ${#need[@]} -eq 0 ] && [ $nginx_missing -eq 0 ]; then
	exit 0
fi

if ! have apt-get; then
	[ $nginx_missing -eq 0 ] || need+=(nginx)
	echo "install-deps: missing ${need[*]} and no apt-get here; install them by hand" >&2
	exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if have sudo; then SUDO=(sudo); else
		echo "install-deps: need root (or sudo) to install: ${need[*]}" >&2
		exit 1
	fi
fi

echo "install-deps: apt-get update"
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
if [ $nginx_missing -eq 1 ]; then
	# nginx-light is the small build; newer Debian releases only have nginx.
	if [ -n "$(apt-cache policy nginx-light 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; then
		need+=(nginx-light)
	else
		need+=(nginx)
	fi
fi
echo "install-deps: apt-get install ${need[*]}"
# Do not let the packages start a system-wide nginx, unbound or vsftpd.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
	"${SUDO[@]}" chmod +x "$policy"
	created_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" || status=$?
if [ $created_policy -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
exit $status
