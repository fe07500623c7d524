# syntax=docker/dockerfile:1
#
# Tandem with its first-party plugins and a default config.
#
#   docker build -t tandem .
#   docker run --rm --network host tandem        # proxies :8080 to 127.0.0.1:3000
#
# Replace /etc/tandem/tandem.toml or /etc/tandem/plugins/ with a mount, or
# set TANDEM_UPSTREAM, TANDEM_LISTEN, TANDEM_ADMIN or TANDEM_PLUGINS_DIR.

FROM rust:1.95-bookworm AS builder
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The plugins are a cargo workspace of their own, pinned to wasm32-wasip2.
RUN cd plugins && cargo build --release --locked -p add-header -p deny-path
# `production`: the release profile with whole-program optimisation.
RUN cargo build --profile production --locked -p tandem --bin tandem \
    && strip --strip-debug target/production/tandem

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tandem
COPY --from=builder /src/target/production/tandem /usr/local/bin/tandem
# Tandem names a plugin after its file.
COPY --from=builder /src/plugins/target/wasm32-wasip2/release/add_header.wasm /etc/tandem/plugins/add-header.wasm
COPY --from=builder /src/plugins/target/wasm32-wasip2/release/deny_path.wasm /etc/tandem/plugins/deny-path.wasm

COPY <<'TOML' /etc/tandem/tandem.toml
# Default config of the Tandem image. Flags and TANDEM_* variables override it.
listen = "0.0.0.0:8080"
# The application, in the same pod (network namespace).
upstream = "http://127.0.0.1:3000"
# Not loopback: in a container, /metrics must be reachable from outside.
admin = "0.0.0.0:9901"

[plugins]
dir = "plugins"
TOML

COPY <<'TOML' /etc/tandem/plugins/add-header.toml
# Example settings; see plugins/add-header/README.md in the repository.
order = 10
failure = "open"

[config]
headers = { "x-served-by" = "tandem" }
TOML

COPY <<'TOML' /etc/tandem/plugins/deny-path.toml
# Example settings; see plugins/deny-path/README.md in the repository.
order = 20
failure = "closed"

[config]
prefixes = ["/admin"]
status = 403
TOML

USER tandem
EXPOSE 8080 9901
ENTRYPOINT ["tandem", "run", "--config", "/etc/tandem/tandem.toml"]
