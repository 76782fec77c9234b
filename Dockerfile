# faithif router appliance.
#
#   docker build -t faithif .
#   docker run --cap-add NET_ADMIN --device /dev/net/tun --network host \
#       -v /etc/faithif:/etc/faithif:ro faithif
#
# The container's command is `faithif run --config /etc/faithif/faithif.conf`
# (deploy/faithif.conf is the commented example); see README.md, "Router
# appliance", and deploy/ for compose and Kubernetes examples.

# Build: a static binary (no cgo), reproducible paths.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/faithif ./cmd/faithif

# Run: the binary, an example configuration, and iproute2 for an operator
# who execs into the container to look at routes.
FROM debian:bookworm-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends iproute2 \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/faithif /usr/local/bin/faithif
COPY deploy/faithif.conf deploy/faithd.conf /etc/faithif/
ENV FAITHIF_RUN_DIR=/run/faithif
# 9464: Prometheus metrics, /healthz, /readyz (the metrics key of faithif.conf).
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/faithif"]
CMD ["run", "--config", "/etc/faithif/faithif.conf"]
