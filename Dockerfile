# syntax=docker/dockerfile:1
#
# faithif router appliance.
#
#   docker build -t faithif .
#   docker run -d --name faithif --network host --cap-drop ALL --cap-add NET_ADMIN \
#       --device /dev/net/tun -v /etc/faithif:/etc/faithif:ro --stop-timeout 30 faithif
#
# The container's command is `faithif run --config /etc/faithif/faithif.conf`
# (deploy/faithif.conf is the commented example and is baked in as the
# default). It needs CAP_NET_ADMIN and /dev/net/tun; IPv6 forwarding is set
# on the host, since /proc/sys is read-only in a container. See README.md,
# "Container", and deploy/ for compose and Kubernetes.

# Build: a static binary (no cgo, so the build image's libc does not matter),
# without local paths. Built on the build machine's platform and
# cross-compiled for the target's (docker buildx --platform linux/arm64).
# go.mod asks for go >= 1.26.8 and the golang images set GOTOOLCHAIN=local,
# so the tag must float to the newest 1.26 patch release (or name one that
# is at least go.mod's).
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
	go build -trimpath -ldflags="-s -w" -o /out/faithif ./cmd/faithif

# Run: the binary and the example configuration. faithif needs nothing else
# (no libc, no shell-outs: links, routes and addresses go through netlink).
# iproute2 is there for the operator who execs into the container to look
# at faith0 and its routes (`ip -6 route show dev faith0`) on hosts with no
# tools of their own; bash (always in the image) is what the compose
# healthcheck uses.
FROM debian:bookworm-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends iproute2 \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/faithif /usr/local/bin/faithif
COPY deploy/faithif.conf deploy/faithd.conf /etc/faithif/
# Control sockets and the keepfaith value (`faithif show`, `faithif reload`
# work through `docker exec`).
ENV FAITHIF_RUN_DIR=/run/faithif
# 9464: Prometheus /metrics, /healthz, /readyz, if faithif.conf's metrics
# key asks for them (the example: 127.0.0.1:9464).
EXPOSE 9464
# SIGTERM drains: new flows refused, open ones get the interface's grace
# (10 s by default), then are reset. Give `docker stop` more than that
# (docker run --stop-timeout 30; compose: stop_grace_period).
STOPSIGNAL SIGTERM
# Healthy while every interface relays (running, not draining, keepfaith 1,
# link up): asked over the control sockets, no shell, no metrics address.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/faithif", "health"]
ENTRYPOINT ["/usr/local/bin/faithif"]
CMD ["run", "--config", "/etc/faithif/faithif.conf"]
