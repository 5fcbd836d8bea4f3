# ringcast in a container. Two stages: the build, with the README's command (Rust and a C
# compiler are all it needs: libopus and aws-lc are built from source by the cc crate), and
# a small runtime image with the binary and conf/.
#
#   docker build -t ringcast .
#   docker run --rm -p 1935:1935 -p 1985:1985 -p 8080:8080 -p 8000:8000/udp ringcast
#
# io_uring under Docker: Docker's default seccomp profile (since Engine 25) refuses the
# io_uring_setup, io_uring_enter and io_uring_register system calls, so ringcast starts on
# its epoll fallback there, as it does on any kernel that refuses io_uring (it logs "io_uring
# unavailable ...; using the epoll fallback"). Nothing needs configuring for that. To run on
# io_uring, give the container a seccomp profile that allows those three calls (or
# `--security-opt seccomp=unconfined`); `--io uring` makes a refusal an error instead.
#
# Configuration: conf/ringcast.conf by default; SRS's environment variables (SRS_LISTEN,
# SRS_HTTP_API_ENABLED, ...) override it, and `-e` runs on the environment alone, as
# conf/docker-compose.yml does.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ringcast

FROM debian:bookworm-slim
# An unprivileged user (numeric, so that the host and Kubernetes' runAsNonRoot see it): every
# default port is above 1024. objs/ is its own, for the pid file (./objs/ringcast.pid in
# conf/ringcast.conf).
RUN groupadd --system --gid 10001 ringcast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /usr/local/ringcast \
        --shell /usr/sbin/nologin ringcast \
    && mkdir -p /usr/local/ringcast/objs \
    && chown 10001:10001 /usr/local/ringcast/objs
COPY --from=build /src/target/release/ringcast /usr/local/bin/ringcast
COPY conf/ /usr/local/ringcast/conf/
WORKDIR /usr/local/ringcast
USER 10001:10001
# RTMP, the HTTP API, HTTP-FLV, WebRTC media (UDP; conf/rtc.conf and SRS_RTC_SERVER_*).
EXPOSE 1935 1985 8080 8000/udp
# SIGTERM (docker stop) ends the players and exits; ringcast handles it as pid 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ringcast"]
CMD ["-c", "conf/ringcast.conf"]
