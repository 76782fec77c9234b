# faithif build, test and demo targets.
#
#   make / make build   build bin/faithif
#   make deps           install missing system packages (apt)
#   make test           deps, go vet, unit tests (-race), end-to-end tests (root),
#                       a 60 s soak (root)
#   make e2e            only the end-to-end tests (root)
#   make demo           fetch a page from an IPv4-only nginx over IPv6 through faithif
#   make bench          kernel vs TAYGA vs faithif benchmark in a namespace lab
#                       (installs tayga, iperf3, wrk; writes BENCHMARKS.md)
#   make soak           connection churn through faithif for SOAK_SECONDS (600), then
#                       goroutines, fds, RSS and open flows back to baseline (root;
#                       knobs in test/soak/doc.go)
#   make fuzz           every fuzz target for FUZZTIME (30s) each, one after another
#                       (knobs in test/scripts/fuzz.sh)
#   make attack         the attacks of issue 12, each beside a legitimate workload,
#                       in throwaway namespaces (root; about 10 minutes, ATTACK_QUICK=1:
#                       about 2; knobs in test/attack/doc.go)

SHELL := /bin/bash

# Use the go on PATH, else the one in /usr/local/go.
GO := $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

BIN        := bin/faithif
UNIT_PKGS  := ./cmd/... ./faithif/... ./stack/... ./relay/...
E2E_TIMEOUT ?= 12m
SOAK_SECONDS ?= 600
SOAK_CI_SECONDS ?= 60
FUZZTIME ?= 30s

.PHONY: all build deps test vet unit e2e demo bench attack soak fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/faithif

deps:
	test/scripts/install-deps.sh

vet:
	$(GO) vet ./...

unit:
	GO=$(GO) test/scripts/unit-tests.sh $(UNIT_PKGS)

e2e: build
	FAITHIF_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./test/...

test: deps
	$(MAKE) --no-print-directory vet
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory soak SOAK_SECONDS=$(SOAK_CI_SECONDS)

demo: deps build
	FAITHIF_BIN=$(CURDIR)/$(BIN) test/scripts/demo.sh

bench: build
	@test/scripts/install-deps.sh --bench || { echo "make bench: could not install the benchmark tools (tayga, iperf3, wrk, nginx); see above" >&2; exit 1; }
	GO=$(GO) FAITHIF_BIN=$(CURDIR)/$(BIN) test/bench/bench.sh

attack: build
	FAITHIF_BIN=$(CURDIR)/$(BIN) $(GO) run ./test/attack

soak: build
	FAITHIF_BIN=$(CURDIR)/$(BIN) SOAK_SECONDS=$(SOAK_SECONDS) $(GO) test -count=1 -v -run '^TestSoak$$' \
		-timeout $$(( $(SOAK_SECONDS) + 600 ))s ./test/soak

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) test/scripts/fuzz.sh $(UNIT_PKGS)

clean:
	rm -rf bin
