# pcsync container image: a multi-stage build, a small non-root runtime.
#   docker build --build-arg PCSYNC_GIT_REV=$(git rev-parse --short=12 HEAD) -t pcsync .
# The image runs `pcsync run` with /etc/pcsync/pcsync.toml; mount your configuration there (and
# the bind password file it names), and a volume on /var/lib/pcsync for state and the audit log.

FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY examples ./examples
# No .git in the build context: the revision for `pcsync --version` comes in as a build argument.
ARG PCSYNC_GIT_REV=unknown
ENV PCSYNC_GIT_REV=${PCSYNC_GIT_REV}
RUN cargo build --release --locked --bin pcsync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/pcsync --create-home --shell /usr/sbin/nologin pcsync \
 && mkdir -p /etc/pcsync \
 && chmod 0700 /var/lib/pcsync
COPY --from=build /src/target/release/pcsync /usr/local/bin/pcsync
COPY config/pcsync.example.toml /etc/pcsync/pcsync.example.toml
USER pcsync
WORKDIR /var/lib/pcsync
# SIP (UDP and TCP; TLS on 5061 when configured) and health/metrics.
EXPOSE 5060/udp 5060/tcp 5061/tcp 9560/tcp
ENTRYPOINT ["/usr/local/bin/pcsync"]
CMD ["--config", "/etc/pcsync/pcsync.toml", "--log-format", "json", "run"]
