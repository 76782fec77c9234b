#!/usr/bin/env bash
# Runs every Go fuzz target of the given package patterns for a bounded time
# each, one after another, and prints a table. Run through 'make fuzz'.
#
#   test/scripts/fuzz.sh [PATTERN...]      (default: the unit-test packages)
#
# Knobs (environment): FUZZTIME (30s per target: a duration, or Nx for N
# inputs), FUZZ_MINIMIZE (1s: how long the fuzzer shrinks each new input; a
# short one keeps it fuzzing instead of minimizing, and a crasher is still
# shrunk), FUZZ_PARALLEL (2 worker processes), GO.
#
# The whole run takes about (number of targets) x FUZZTIME plus building.
# A crasher is written by go test to the package's testdata/fuzz/TARGET/;
# from then on a plain 'go test' (make unit, CI) runs it with the seeds, so
# commit it with the fix. Exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
FUZZTIME=${FUZZTIME:-30s}
MINIMIZE=${FUZZ_MINIMIZE:-1s}
PARALLEL=${FUZZ_PARALLEL:-2}
[ $# -gt 0 ] || set -- ./cmd/... ./faithif/... ./stack/... ./relay/...

pkgs=$("$GO" list "$@")
targets=()
for p in $pkgs; do
	# -list compiles the test binary and prints its matching names.
	for t in $("$GO" test -list '^Fuzz' "$p" | grep '^Fuzz' || true); do
		targets+=("$p $t")
	done
done
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz target in $*" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, FUZZTIME=$FUZZTIME each, $PARALLEL workers"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
results=()
failed=0
for entry in "${targets[@]}"; do
	read -r p t <<<"$entry"
	short=${p#github.com/faithif/faithif/}
	echo "==> $short $t"
	start=$(date +%s)
	if "$GO" test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" \
		-parallel "$PARALLEL" "$p" >"$log" 2>&1; then
		res=ok
	else
		res=FAILED
		failed=1
		# The failure, its stack and where the input was written.
		grep -v '^fuzz: elapsed' "$log" | tail -60 >&2
	fi
	# The last progress line: "fuzz: elapsed: 30s, execs: 1234 (41/sec), new interesting: 5 (total: 20)"
	last=$(grep 'execs:' "$log" | tail -1 || true)
	execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$last")
	newi=$(sed -n 's/.*new interesting: \([0-9]*\).*/\1/p' <<<"$last")
	results+=("$(printf '%-18s %-22s %-7s %10s %8s %6ss' "$short" "$t" "$res" "${execs:-?}" "${newi:-?}" "$(($(date +%s) - start))")")
done

echo
printf '%-18s %-22s %-7s %10s %8s %7s\n' package target result execs new time
printf '%s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
	echo "fuzz: FAILED; failing inputs are in the packages' testdata/fuzz/ (go test -run=TARGET/NAME reruns one)" >&2
	exit 1
fi
