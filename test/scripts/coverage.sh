#!/usr/bin/env bash
# Prints the combined coverage of the unit tests and the end-to-end tests:
# per package and in total, from the covdata directories given (the unit
# tests' -test.gocoverdir and the e2e binary's GOCOVERDIR; see make test).
# Usage: coverage.sh DIR...
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ $# -gt 0 ] || { echo "usage: $0 COVERDIR..." >&2; exit 2; }
dirs=()
for d in "$@"; do
	if [ -z "$(ls -A "$d" 2>/dev/null)" ]; then
		echo "coverage: $d is empty (was the binary built with -cover, GOCOVERDIR set?)" >&2
		exit 1
	fi
	dirs+=("$d")
done
in=$(IFS=,; echo "${dirs[*]}")
merged=$(mktemp -d)
trap 'rm -rf "$merged"' EXIT
"$GO" tool covdata merge -i="$in" -o="$merged"
module=$("$GO" list -m)
echo "coverage, unit + end-to-end tests combined ($*):"
# Test harnesses and tools are not the product.
"$GO" tool covdata percent -i="$merged" |
	grep -v -e "$module/test/" -e "$module/cmd/internal/" |
	sed -e "s|^\s*$module/|  |" -e 's|\s*coverage: | |' | sort
"$GO" tool covdata textfmt -i="$merged" -o="$merged/profile.txt"
grep -v -e "^$module/test/" -e "^$module/cmd/internal/" "$merged/profile.txt" >"$merged/product.txt"
"$GO" tool cover -func="$merged/product.txt" | tail -1 | sed 's/^total:\s*(statements)\s*/  total: /'
