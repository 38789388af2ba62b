# syntax=docker/dockerfile:1
# logpipe container image: one binary, every role (`logpipe gateway|producer|consumer|migrate|...`).
#
#   docker build -t logpipe:latest .
#   docker run --rm logpipe:latest config check --env
#
# Stage 1 builds the `logpipe` binary (crate crates/logpipe). rdkafka is built vendored: librdkafka
# from source with vendored OpenSSL and zstd, which needs a C/C++ toolchain, make, perl (OpenSSL's
# Configure), pkg-config, cmake and zlib headers. rust:bookworm ships most of them; they are listed
# explicitly so the image does not depend on what the base happens to include.
# Stage 2 is debian:bookworm-slim with only the binary, CA certificates and a non-root user; the
# binary needs libc, libgcc_s, libm and libz at run time, all present in bookworm-slim.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake perl pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Cache the registry and target directory across builds (BuildKit); copy the binary out of the
# cache mount so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin logpipe \
    && install -D -m 0755 target/release/logpipe /out/logpipe

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 logpipe \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin logpipe
COPY --from=build /out/logpipe /usr/local/bin/logpipe
COPY config/logpipe.example.toml /etc/logpipe/logpipe.example.toml
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# gateway, producer, consumer (health and metrics).
EXPOSE 8080 8081 8082
# Containers get their settings from LOGPIPE_* variables (`logpipe config check --env`), or mount a
# TOML file and set LOGPIPE_CONFIG=/etc/logpipe/logpipe.toml. Pass the role as the command:
# `docker run logpipe:latest consumer`. SIGTERM drains and commits before exit.
ENTRYPOINT ["/usr/local/bin/logpipe"]
CMD ["--help"]
