#!/usr/bin/env bash
# Runs the unit tests of the given package patterns with the race detector.
# Every pattern must name an existing directory with packages, and every
# pattern's packages must have tests: a package that vanished (moved,
# renamed, deleted) fails the run instead of passing it silently.
# With COVERDIR set, the tests also write their coverage of every package of
# the module there (go tool covdata format), for test/scripts/coverage.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ $# -gt 0 ] || set -- ./cmd/... ./faithif/... ./stack/... ./relay/...

for p in "$@"; do
	if [ ! -d "${p%/...}" ]; then
		echo "unit tests: $p: no such directory" >&2
		exit 1
	fi
done

errs=$(mktemp)
trap 'rm -f "$errs"' EXIT
if ! pkgs=$("$GO" list "$@" 2>"$errs"); then
	cat "$errs" >&2
	exit 1
fi
if [ -s "$errs" ]; then
	# e.g. "matched no packages"
	cat "$errs" >&2
	echo "unit tests: $*: a pattern matches no package" >&2
	exit 1
fi
# Each pattern must still bring packages with tests.
for p in "$@"; do
	n=$("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "$p" | grep -c . || true)
	if [ "$n" -eq 0 ]; then
		echo "unit tests: $p: no package with tests" >&2
		exit 1
	fi
done

cover=()
if [ -n "${COVERDIR:-}" ]; then
	mkdir -p "$COVERDIR"
	module=$("$GO" list -m)
	cover=(-cover -covermode=atomic -coverpkg="$module/...")
fi
# shellcheck disable=SC2086
if [ ${#cover[@]} -gt 0 ]; then
	exec "$GO" test -race -count=1 -timeout 5m "${cover[@]}" $pkgs -args -test.gocoverdir="$COVERDIR"
fi
exec "$GO" test -race -count=1 -timeout 5m $pkgs
