# syntax=docker/dockerfile:1
#
# sheetsync container image.
#   docker build -t sheetsync .
#   docker run --rm -e MONGO_URL=... -p 8080:8080 sheetsync
# See docs/deployment.md ("The container route") and config/docker-compose.example.yml.
# tests/it/deployment.rs checks the properties of this file; keep them in step.

# ---- builder: compiles the release binary --------------------------------
# Same toolchain as CI.
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependency layer: built from the manifest and lock file alone with stub
# sources, so it is reused as long as Cargo.toml and Cargo.lock do not change.
# Cargo refuses a manifest whose declared targets are missing, so the bench
# that Cargo.toml declares gets a stub too (the image never builds it).
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-release scripts/build-release
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > benches/sync.rs \
    && scripts/build-release \
    && rm -rf src

# The real sources. COPY keeps the files' old mtimes, which could look older
# than the stub build; touching the crate roots makes cargo rebuild the crate.
COPY src src
RUN touch src/main.rs src/lib.rs \
    && scripts/build-release \
    && ./target/release/sheetsync --version

# ---- runtime: a slim Debian with CA certificates and the binary only -----
FROM debian:bookworm-slim AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sheetsync" \
      org.opencontainers.image.description="Keeps a MongoDB database in step with the spreadsheets people edit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/sheetsync/sheetsync" \
      org.opencontainers.image.documentation="https://github.com/sheetsync/sheetsync/blob/main/docs/deployment.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# ca-certificates for TLS to Google and to MongoDB Atlas; nothing else (no
# curl: the health check is the binary's own `sheetsync health`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sheetsync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sheetsync

COPY --from=builder /build/target/release/sheetsync /usr/local/bin/sheetsync

# Inside a container the daemon must listen on every interface.
ENV SHEETSYNC_LISTEN=0.0.0.0:8080 \
    SHEETSYNC_LOG_FORMAT=json

USER 10001:10001
EXPOSE 8080

# SIGTERM: stop taking work, let a running sync finish, exit 0. Give the
# container a stop timeout (docker stop -t / stop_grace_period) above the
# daemon's shutdown grace period.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sheetsync", "health"]

ENTRYPOINT ["sheetsync"]
CMD ["run"]
