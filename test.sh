#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end suite once on io_uring and once on the
# epoll fallback. Needs ffmpeg, rtmpdump, nginx, libnginx-mod-rtmp, shellcheck and chromium
# (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")"
echo "== unit and end-to-end tests, io_uring (RINGCAST_IO=uring)"
RINGCAST_IO=uring cargo test --all-targets
echo "== end-to-end tests again on the epoll fallback (RINGCAST_IO=epoll)"
RINGCAST_IO=epoll cargo test --test '*'
echo "== heap profiling, in the build with jemalloc (--features jemalloc)"
RINGCAST_IO=uring cargo test --features jemalloc --lib --test profile -- heap
