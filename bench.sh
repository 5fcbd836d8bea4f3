#!/usr/bin/env bash
# bench.sh: SRS's performance table (SRS vs nginx-rtmp, its sb_rtmp_load players), with
# ringcast in it, measured side by side in one run on this machine.
#
# For each server and each client level it starts the server fresh, publishes source.flv
# with ringcast-bench (SEI-stamped, so latency is measured through any server), samples the
# server's RSS with the publisher alone, starts the players, waits for the ramp and each
# player's GOP-cache burst, then samples over the measuring window: server CPU (user and
# system, from /proc), RSS, established connections, expected and actual bandwidth, the load
# tool's CPU and the players' latency. Before each run it prints a progress line (the run and
# the level of how many, the server, the time left at the mean run's pace). It prints the
# Markdown table and writes results.csv, table.md and chart.svg (CPU and memory against
# players) under bench-results/.
#
# Servers: ringcast (io_uring), ringcast-epoll (the same binary on its epoll fallback, so
# io_uring's gain is measured), ringcast-nocount (built without the alloc-count feature, the
# counting layer behind /api/v1/valgrind, so its cost is measured), nginx-rtmp (Debian's libnginx-mod-rtmp, one worker, installed
# if missing), srs (when SRS_BIN names an SRS binary).
#
# --topology edge measures a cluster beside one server: an origin and two edges (ringcast
# processes of their own, the edges pulling the stream from the origin with `cluster { mode
# remote; }`), the same players spread over the edges; rows ringcast-origin, ringcast-edges
# (both edges) and ringcast-cluster (all three), and topology.md: total and per-player CPU
# against the one server, and the origin's CPU as players grow.
#
# Everything it starts it stops, by pid, on exit and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'EOF'
usage: ./bench.sh [options]
  --levels "500 1000 1500 2000 2500"   player counts to measure
  --servers "ringcast ringcast-epoll nginx-rtmp [ringcast-nocount] [srs]"
                                       servers to measure (srs needs SRS_BIN=/path/to/srs)
  --proto rtmp|flv|whep|hls            players over RTMP (default), HTTP-FLV, WebRTC (WHEP:
                                       the RTMP publish played through rtmp_to_rtc; ringcast
                                       and SRS only, loss in the ANbps column) or HLS (2 s
                                       segments, a 10 s window: ringcast and SRS serving their
                                       own, nginx serving nginx-rtmp's files; players keeping
                                       up in the ANbps column; default levels "1000 5000")
  --publish rtmp|whip                  with --proto whep, the publisher: RTMP (default: the
                                       server's rtmp_to_rtc repackages it and transcodes AAC to
                                       Opus) or WHIP (ringcast-bench whip-publish: H.264 and
                                       Opus over WebRTC, so the server is a pure SFU; rows say
                                       "whip-whep")
  --whep-sample N                      with --proto whep: one player in N is full (str0m
                                       decrypts its media: latency, NACKs), the others light
                                       (RTP counted from its clear header, not decrypted: far
                                       less load-tool CPU per player; their loss is the raw
                                       loss on the wire, no NACK repair). Latency comes from
                                       the full players alone. 1: all full (default 10)
  --whep-no-gro                        with --proto whep: players read each datagram alone,
                                       not with UDP_GRO; on loopback the kernel then splits a
                                       server's UDP GSO sends at the players' sockets, billed
                                       to the server's CPU, where a network would bill the
                                       receiving host
  --hls-sample N                       with --proto hls: one player in N is full (demuxes its
                                       segments for the SEI latency, plays every frame on its
                                       clock), the others light (fetch every segment whole and
                                       in order, count its bytes, play whole segments on the
                                       clock). Latency from the full players. 1: all full
                                       (default 10)
  --topology single|edge               single (default): each server alone; edge: ringcast
                                       alone, then an origin and 2 edges on this machine
                                       with the players spread over the edges (rtmp, flv)
  --ramp SECONDS                       players start evenly over this time (default 5; 20
                                       with --proto hls)
  --warmup SECONDS                     wait after the ramp for each player's GOP-cache burst
                                       to pass before measuring (default 6)
  --measure SECONDS                    the measuring window after the warm-up (default 20)
  --media FILE                         the stream to publish (default ../shared/media/source.flv)
  --load-workers N                     load tool threads (default 1, like sb_rtmp_load)
  --mw-latency MS                      ringcast's mw_latency for this run (default: bench.conf's,
                                       else the server's default): sweeps the merged write
  --out DIR                            results folder (default bench-results/DATE)
  --port-base N                        ports used: N..N+2 for RTMP, N+10, N+12 and N+13 for
                                       HTTP, UDP N+20 and N+22 for WebRTC, N+5, N+6 (RTMP)
                                       and N+15, N+16 (HTTP) for the edges (default 19350, as
                                       in conf/bench.conf)
  --no-build                           use the binaries in target/release as they are
  --soak MINUTES                       instead: ringcast under player churn, RSS and leak check
  -h, --help                           this text
Environment: SRS_BIN (an SRS binary), RINGCAST_WORKERS (ringcast's workers; default one per
core), RINGCAST_BIN_DIR (where ringcast and ringcast-bench are; default target/release).
EOF
}

levels=""
servers=""
proto=rtmp
ramp=""
measure=20
warmup=6
media=../shared/media/source.flv
load_workers=1
mw_latency=""
publish=rtmp
whep_sample=10
whep_gro=()
hls_sample=10
topology=single
out="bench-results/$(date +%Y%m%d-%H%M%S)"
build=1
bin_dir=${RINGCAST_BIN_DIR:-target/release}
port_base=19350

while (($#)); do
    case "$1" in
    --levels) levels="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --proto) proto="$2"; shift 2 ;;
    --ramp) ramp="$2"; shift 2 ;;
    --measure) measure="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --port-base) port_base="$2"; shift 2 ;;
    --media) media="$2"; shift 2 ;;
    --load-workers) load_workers="$2"; shift 2 ;;
    --mw-latency) mw_latency="$2"; shift 2 ;;
    --publish) publish="$2"; shift 2 ;;
    --whep-sample) whep_sample="$2"; shift 2 ;;
    --whep-no-gro) whep_gro=(--no-gro); shift ;;
    --hls-sample) hls_sample="$2"; shift 2 ;;
    --topology) topology="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --soak) soak_minutes="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() {
    echo "bench.sh: $*" >&2
    exit 1
}

[[ -f "$media" ]] || die "$media: no such file (--media FILE)"
case "$proto" in rtmp | flv | whep | hls) ;; *) die "--proto must be rtmp, flv, whep or hls" ;; esac
case "$publish" in rtmp | whip) ;; *) die "--publish must be rtmp or whip" ;; esac
[[ "$publish" == rtmp || "$proto" == whep ]] || die "--publish whip plays over WHEP: add --proto whep"
# The CSV's protocol column: a WHIP publish's rows apart from an RTMP publish's.
row_proto=$proto
[[ "$publish" == whip ]] && row_proto=whip-whep
if [[ -z "$levels" ]]; then
    levels="500 1000 1500 2000 2500"
    # The issue's HLS target: 5000 players of the 528 kbps stream.
    [[ "$proto" == hls ]] && levels="1000 5000"
fi
if [[ -z "$ramp" ]]; then
    ramp=5
    # An HLS player's start is a playlist and three segments at once (450 KB here): 5000 in
    # 5 s would measure that burst (2.2 GB), not the steady serving the window is for.
    [[ "$proto" == hls ]] && ramp=20
fi
[[ "$whep_sample" =~ ^[1-9][0-9]*$ ]] || die "--whep-sample takes a whole number above 0"
[[ "$hls_sample" =~ ^[1-9][0-9]*$ ]] || die "--hls-sample takes a whole number above 0"
case "$topology" in single | edge) ;; *) die "--topology must be single or edge" ;; esac
if [[ "$topology" == edge ]]; then
    [[ "$proto" == whep ]] && die "--topology edge plays rtmp or flv"
    [[ -z "$servers" || "$servers" == ringcast ]] || die "--topology edge measures ringcast alone"
    servers=ringcast
fi
[[ -z "$mw_latency" || "$mw_latency" =~ ^[0-9]+$ ]] || die "--mw-latency takes milliseconds"
if [[ -z "$servers" ]]; then
    servers="ringcast ringcast-epoll"
    # nginx-rtmp has no WebRTC.
    [[ "$proto" != whep ]] && servers="$servers nginx-rtmp"
    [[ -n "${SRS_BIN:-}" ]] && servers="$servers srs"
fi

# Ports of the servers under test: RTMP on base+0 (ringcast), +1 (nginx-rtmp), +2 (SRS),
# HTTP-FLV on base+10 (ringcast, with its API) and +12 (SRS), SRS's API on +13, WebRTC's UDP
# on +20 (ringcast) and +22 (SRS), HLS on the HTTP ports and, for nginx-rtmp's files, nginx's
# HTTP on +11. conf/bench.conf holds the default base's.
declare -A rtmp_port=([ringcast]=$port_base [ringcast-epoll]=$port_base
    [ringcast-nocount]=$port_base [nginx-rtmp]=$((port_base + 1)) [srs]=$((port_base + 2)))
declare -A http_port=([ringcast]=$((port_base + 10)) [ringcast-epoll]=$((port_base + 10))
    [ringcast-nocount]=$((port_base + 10)) [srs]=$((port_base + 12)))
declare -A api_port=([ringcast]=$((port_base + 10)) [ringcast-epoll]=$((port_base + 10))
    [ringcast-nocount]=$((port_base + 10)) [srs]=$((port_base + 13)))
declare -A hls_port=([ringcast]=$((port_base + 10)) [ringcast-epoll]=$((port_base + 10))
    [ringcast-nocount]=$((port_base + 10)) [nginx-rtmp]=$((port_base + 11)) [srs]=$((port_base + 12)))
declare -A udp_port=([ringcast]=$((port_base + 20)) [ringcast-epoll]=$((port_base + 20))
    [ringcast-nocount]=$((port_base + 20)) [srs]=$((port_base + 22)))
# --topology edge: the origin is ringcast's ports; the two edges' RTMP and HTTP.
edge_rtmp=($((port_base + 5)) $((port_base + 6)))
edge_http=($((port_base + 15)) $((port_base + 16)))

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/ringcast-bench.XXXXXX)
ticks_per_s=$(getconf CLK_TCK)
# Seconds the publisher outlives the window, its players 2 s less: the window's end must
# sample them alive even on a loaded machine, where reading /proc for three servers is slow.
linger_s=7
# Seconds the publisher streams alone before the players come: HLS players join a stream
# whose playlist already holds its 10 s window, as viewers of a live stream do. Players of a
# younger stream start with less than three segments behind them, a thinner buffer than
# hls.js keeps, and measure the stream's start rather than the server.
preroll=4
[[ "$proto" == hls ]] && preroll=14

# Processes started here, stopped on any exit.
started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    started=()
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

# Stops a process and its children (nginx's workers): TERM, up to 5 s, then KILL.
stop_pid() {
    local pid=$1 rest=() p pids
    mapfile -t pids < <(tree "$pid")
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        alive=0
        for p in "${pids[@]}"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${started[@]}"; do
        [[ "$p" == "$pid" ]] || rest+=("$p")
    done
    started=("${rest[@]}")
}

# The pids of a server: the process and its children (nginx's worker).
tree() {
    echo "$1"
    cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
}

# "user system" clock ticks of process trees, threads included.
cpu_ticks() {
    local u=0 s=0 p q f
    for p in $(for q in "$@"; do tree "$q"; done); do
        [[ -r "/proc/$p/stat" ]] || continue
        # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$p/stat")"
        u=$((u + f[11]))
        s=$((s + f[12]))
    done
    echo "$u $s"
}

# RSS of process trees, in kB.
rss_kb() {
    local total=0 p q kb
    for p in $(for q in "$@"; do tree "$q"; done); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# Established TCP connections whose local port is $1 (what `ss -tn sport = :PORT` counts).
connections() {
    local hex
    hex=$(printf '%04X' "$1")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v p=":$hex" '$4 == "01" && substr($2, length($2) - 4) == p {n++} END {print n + 0}'
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

nginx_module() {
    local m
    for m in /usr/lib/nginx/modules/ngx_rtmp_module.so /usr/share/nginx/modules/ngx_rtmp_module.so; do
        [[ -f "$m" ]] && { echo "$m"; return 0; }
    done
    return 1
}

ensure_nginx() {
    if ! command -v nginx >/dev/null || ! nginx_module >/dev/null; then
        echo "== installing nginx and libnginx-mod-rtmp (Debian packages)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # policy-rc.d keeps the package from starting its own server on port 80.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        apt-get install -y -qq --no-install-recommends nginx libnginx-mod-rtmp
        rm -f /usr/sbin/policy-rc.d
    fi
}

# conf/bench.conf on RTMP port $1 and HTTP port $2 (WebRTC's UDP port $3 with --proto whep),
# its pid file its own, with $4 added to the default vhost.
ringcast_conf() {
    local rtmp=$1 http=$2 udp=$3 vhost_extra=$4
    sed -e "s/^listen .*/listen              $rtmp;/" \
        -e "s|^pid .*|pid                 $work/ringcast-$rtmp.pid;|" \
        -e "s/^\(  *listen *\)[0-9]*;\$/\1$http;/" conf/bench.conf >"$work/conf.tmp"
    if [[ -n "$mw_latency" ]]; then
        sed -i -e "s/^vhost __defaultVhost__ {\$/&\n    mw_latency $mw_latency;/" "$work/conf.tmp"
    fi
    if [[ -n "$vhost_extra" ]]; then
        sed -i -e "s/^vhost __defaultVhost__ {\$/&\n    $vhost_extra/" "$work/conf.tmp"
    fi
    if [[ "$proto" == whep ]]; then
        # WebRTC on, only for the WHEP table: rtmp_to_rtc, as in conf/rtc.conf.
        sed -i -e "s/^vhost __defaultVhost__ {\$/&\n    rtc { enabled on; rtmp_to_rtc on; nack on; }/" \
            "$work/conf.tmp"
        echo "rtc_server { enabled on; listen 127.0.0.1:$udp; candidate 127.0.0.1; }" >>"$work/conf.tmp"
    fi
    if [[ "$proto" == hls ]]; then
        # Served from memory on the HTTP port; the files go to the run's folder, as SRS's.
        mkdir -p "$work/ringcast-hls-$rtmp"
        sed -i -e "s|^vhost __defaultVhost__ {\$|&\n    hls { enabled on; hls_fragment 2; hls_window 10; hls_path $work/ringcast-hls-$rtmp; }|" \
            "$work/conf.tmp"
    fi
    cat "$work/conf.tmp"
}

# Starts server $1; sets server_pid.
start_server() {
    local name=$1 log="$out/logs/$1-$2.log"
    # ringcast binds with SO_REUSEPORT: a server left running on the port would silently
    # take half the connections, so the port must be free.
    if (exec 3<>"/dev/tcp/127.0.0.1/${rtmp_port[$name]}") 2>/dev/null; then
        die "port ${rtmp_port[$name]} is in use: stop what listens there before benchmarking $name"
    fi
    case "$name" in
    ringcast | ringcast-epoll | ringcast-nocount)
        local io=uring exe="$bin_dir/ringcast"
        [[ "$name" == ringcast-epoll ]] && io=epoll
        [[ "$name" == ringcast-nocount ]] && exe="$bin_dir/ringcast-nocount"
        local workers=()
        [[ -n "${RINGCAST_WORKERS:-}" ]] && workers=(--workers "$RINGCAST_WORKERS")
        ringcast_conf "${rtmp_port[$name]}" "${http_port[$name]}" "${udp_port[$name]}" "" \
            >"$work/ringcast.conf"
        "$exe" -c "$work/ringcast.conf" --io "$io" "${workers[@]}" >"$log" 2>&1 &
        ;;
    nginx-rtmp)
        local prefix="$work/nginx" hls="" http=""
        mkdir -p "$prefix/logs"
        if [[ "$proto" == hls ]]; then
            # nginx-rtmp writes the segments and the playlist, nginx's static location serves
            # them: one process does both, as an nginx-rtmp HLS deployment does.
            rm -rf "$prefix/html"
            mkdir -p "$prefix/html/live"
            # nginx's worker runs as nobody when started as root: it must reach the files.
            chmod 711 "$work"
            hls="hls on; hls_path $prefix/html/live; hls_fragment 2s; hls_playlist_length 10s;"
            http="http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:${hls_port[nginx-rtmp]};
        root $prefix/html;
        types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
        location ~ \.m3u8\$ { add_header Cache-Control no-cache; }
    }
}"
        fi
        cat >"$prefix/nginx.conf" <<EOF
load_module $(nginx_module);
daemon off;
worker_processes 1;
worker_rlimit_nofile 100000;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 20000; }
rtmp {
    server {
        listen 127.0.0.1:${rtmp_port[nginx-rtmp]};
        chunk_size 60000;
        application live { live on; $hls }
    }
}
$http
EOF
        nginx -p "$prefix" -c "$prefix/nginx.conf" >"$log" 2>&1 &
        ;;
    srs)
        [[ -x "${SRS_BIN:-}" ]] || die "srs: set SRS_BIN to an SRS binary"
        local srs_hls=""
        if [[ "$proto" == hls ]]; then
            mkdir -p "$work/srs-html"
            srs_hls="hls { enabled on; hls_fragment 2; hls_window 10; hls_path $work/srs-html; }"
        fi
        # SRS refuses to start unless max_connections + 128 is below the open-files limit
        # (srs_app_config.cpp); 256 under it leaves room for its HLS files and logs too.
        local nofile max_conn=20000
        nofile=$(ulimit -n)
        if [[ "$nofile" =~ ^[0-9]+$ ]] && ((nofile - 256 < max_conn)); then
            max_conn=$((nofile - 256))
        fi
        ((max_conn > 0)) || die "srs: the open-files limit ($nofile) leaves no connections"
        cat >"$work/srs.conf" <<EOF
listen ${rtmp_port[srs]};
max_connections $max_conn;
daemon off;
pid $work/srs.pid;
srs_log_tank console;
srs_log_level warn;
http_server { enabled on; listen ${http_port[srs]}; dir $work/srs-html; }
http_api { enabled on; listen ${api_port[srs]}; }
rtc_server { enabled on; listen ${udp_port[srs]}; candidate 127.0.0.1; }
vhost __defaultVhost__ {
    gop_cache on;
    queue_length 10;
    http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
    rtc { enabled on; rtmp_to_rtc on; nack on; }
    $srs_hls
}
EOF
        "$SRS_BIN" -c "$work/srs.conf" >"$log" 2>&1 &
        ;;
    *) die "unknown server $name" ;;
    esac
    server_pid=$!
    started+=("$server_pid")
    wait_port "${rtmp_port[$name]}" || die "$name did not open port ${rtmp_port[$name]} (see $log)"
}

summary_field() {
    sed -n 's/.* '"$2"'=\([^ ]*\).*/\1/p' "$1" | tail -1
}

csv="$out/results.csv"
echo "server,proto,players,cpu_pct,user_pct,sys_pct,rss_mb,idle_rss_mb,conn,enbps_mbps,anbps_mbps,sb_cpu_pct,lat_p50_ms,lat_p99_ms,alive,failed,loss_pct,keeping_up,lat_p95_ms" >"$csv"

if ((build)) && [[ -z "${RINGCAST_BIN_DIR:-}" ]]; then
    echo "== building release"
    if [[ " $servers " == *" ringcast-nocount "* ]]; then
        # Only the ringcast crate differs: its build without the counting allocator, kept aside.
        cargo build --release --bin ringcast --no-default-features
        cp target/release/ringcast target/release/ringcast-nocount
    fi
    cargo build --release --bins
fi
[[ " $servers " == *" nginx-rtmp "* ]] && ensure_nginx
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bench="$bin_dir/ringcast-bench"
echo "== $(nproc) cores, $(uname -r), levels: $levels, servers: $servers, proto: $proto, publish: $publish"
echo "== results in $out"

measure_one() {
    local name=$1 players=$2
    local hport=${http_port[$name]:-}
    [[ "$proto" == hls ]] && hport=${hls_port[$name]:-}
    if [[ "$proto" != rtmp && -z "$hport" ]]; then
        echo "-- $name has no $proto: skipped"
        return 0
    fi
    start_server "$name" "$players"
    local port=${rtmp_port[$name]}
    local total=$((preroll + ramp + warmup + measure + linger_s))
    local pub_cmd=rtmp-publish pub_url="rtmp://127.0.0.1:$port/live/livestream"
    if [[ "$publish" == whip ]]; then
        pub_cmd=whip-publish
        pub_url="http://127.0.0.1:${api_port[$name]}/rtc/v1/whip/?app=live&stream=livestream"
    fi
    "$bench" "$pub_cmd" -c 1 -i "$media" -r "$pub_url" \
        -d "$total" --interval 5 >"$out/logs/$name-$players-publish.log" 2>&1 &
    local pub=$!
    started+=("$pub")
    sleep "$preroll"
    local idle_kb
    idle_kb=$(rss_kb "$server_pid")
    local url="rtmp://127.0.0.1:$port/live/livestream" cmd=rtmp-play extra=()
    if [[ "$proto" == flv ]]; then
        url="http://127.0.0.1:${http_port[$name]}/live/livestream.flv"
        cmd=flv-play
    elif [[ "$proto" == whep ]]; then
        url="http://127.0.0.1:${api_port[$name]}/rtc/v1/whep/?app=live&stream=livestream"
        cmd=whep-play
        extra=(--sample "$whep_sample" "${whep_gro[@]}")
    elif [[ "$proto" == hls ]]; then
        url="http://127.0.0.1:$hport/live/livestream.m3u8"
        cmd="hls-play"
        extra=(--sample "$hls_sample")
    fi
    "$bench" "$cmd" -c "$players" -r "$url" -s "$ramp" -d "$((ramp + warmup + measure + linger_s - 2))" \
        --interval 5 --workers "$load_workers" "${extra[@]}" >"$out/logs/$name-$players-play.log" 2>&1 &
    local load=$!
    started+=("$load")
    sleep "$((ramp + warmup))"
    local t0 s0 l0 t1 s1 l1
    t0=$(date +%s.%N)
    s0=$(cpu_ticks "$server_pid")
    l0=$(cpu_ticks "$load")
    sleep "$measure"
    # Connections first: the players leave a second after the window, and on a loaded
    # machine the samples below can take that long.
    local rss conn
    conn=$(connections "$port")
    [[ "$proto" == flv || "$proto" == hls ]] && conn=$(($(connections "$hport") + conn))
    t1=$(date +%s.%N)
    s1=$(cpu_ticks "$server_pid")
    l1=$(cpu_ticks "$load")
    rss=$(rss_kb "$server_pid")
    wait "$load" || true
    stop_pid "$load"
    wait "$pub" || true
    stop_pid "$pub"
    stop_pid "$server_pid"
    local play_log="$out/logs/$name-$players-play.log" pub_log="$out/logs/$name-$players-publish.log"
    local mbps p50 p95 p99 alive failed stream_mbps loss keeping_up
    mbps=$(summary_field "$play_log" mbps)
    p50=$(summary_field "$play_log" lat_p50_ms)
    p95=$(summary_field "$play_log" lat_p95_ms)
    p99=$(summary_field "$play_log" lat_p99_ms)
    alive=$(summary_field "$play_log" alive)
    failed=$(summary_field "$play_log" failed)
    loss=$(summary_field "$play_log" loss_pct)
    keeping_up=$(summary_field "$play_log" keeping_up)
    # WebRTC sessions are UDP: Conn counts the players the load tool has connected.
    [[ "$proto" == whep ]] && conn=$alive
    stream_mbps=$(summary_field "$pub_log" mbps)
    [[ -n "$mbps" && -n "$stream_mbps" ]] || die "$name at $players: no SUMMARY (see $play_log, $pub_log)"
    emit_row "$name" "$players" "$t0" "$t1" "$s0" "$s1" "$l0" "$l1" "$rss" "$idle_kb" "$conn" \
        "$stream_mbps" "$mbps" "$p50" "$p99" "$alive" "$failed" "$loss" "$keeping_up" "$p95"
}

# One CSV row, printed and appended: server, players, the window's start and end times, the
# server's and the load tool's "user system" ticks at both, RSS and idle RSS (kB),
# connections, the stream's Mbps, the players' Mbps, latency p50 and p99, alive, failed, loss,
# the HLS players keeping up, and latency p95.
emit_row() {
    local su ss eu es lu ls mu ms
    read -r su ss <<<"$5"
    read -r eu es <<<"$6"
    read -r lu ls <<<"$7"
    read -r mu ms <<<"$8"
    awk -v name="$1" -v proto="$row_proto" -v n="$2" -v t0="$3" -v t1="$4" -v hz="$ticks_per_s" \
        -v su="$su" -v ss="$ss" -v eu="$eu" -v es="$es" -v lu="$lu" -v ls="$ls" -v mu="$mu" -v ms="$ms" \
        -v rss="$9" -v idle="${10}" -v conn="${11}" -v sm="${12}" -v am="${13}" \
        -v p50="${14}" -v p99="${15}" -v alive="${16}" -v failed="${17}" -v loss="${18}" \
        -v keep="${19}" -v p95="${20:-}" 'BEGIN {
            dt = t1 - t0; u = (eu - su) / hz / dt * 100; s = (es - ss) / hz / dt * 100
            sb = ((mu - lu) + (ms - ls)) / hz / dt * 100
            printf "%s,%s,%d,%.1f,%.1f,%.1f,%.1f,%.1f,%d,%.1f,%.1f,%.1f,%d,%d,%d,%d,%s,%s,%s\n",
                name, proto, n, u + s, u, s, rss / 1024, idle / 1024, conn, n * sm, am, sb,
                p50, p99, alive, failed, loss, keep, p95
        }' | tee -a "$csv"
    # What the players can receive is capped by their own CPU: a saturated load tool
    # measures itself, not the server. Said beside the row and under the table.
    local sb
    sb=$(tail -1 "$csv" | cut -d, -f12)
    if awk -v sb="$sb" -v w="$load_workers" 'BEGIN { exit !(sb >= 90 * w) }'; then
        echo "- $name, $players $proto players: the load tool used $sb% of a core with" \
            "$load_workers worker(s): saturated, so this row shows the players' limit, not the server's" |
            tee -a "$out/notes.md"
    fi
}

# --topology edge at $1 players: an origin (ringcast's ports) and two edges pulling from it,
# each a ringcast process; the publisher on the origin, half the players on each edge, one
# load tool per edge. Three rows: the origin, both edges together, all three.
measure_edge() {
    local players=$1 origin=${rtmp_port[ringcast]} i
    local rtmp=("$origin" "${edge_rtmp[@]}") http=("${http_port[ringcast]}" "${edge_http[@]}")
    local names=(origin edge-1 edge-2) pids=() loads=() extra
    local workers=()
    [[ -n "${RINGCAST_WORKERS:-}" ]] && workers=(--workers "$RINGCAST_WORKERS")
    for i in 0 1 2; do
        (exec 3<>"/dev/tcp/127.0.0.1/${rtmp[i]}") 2>/dev/null &&
            die "port ${rtmp[i]} is in use: stop what listens there before benchmarking the cluster"
        extra=""
        ((i > 0)) && extra="cluster { mode remote; origin 127.0.0.1:$origin; }"
        ringcast_conf "${rtmp[i]}" "${http[i]}" "" "$extra" >"$work/${names[i]}.conf"
        "$bin_dir/ringcast" -c "$work/${names[i]}.conf" "${workers[@]}" \
            >"$out/logs/cluster-${names[i]}-$players.log" 2>&1 &
        pids+=($!)
        started+=($!)
        wait_port "${rtmp[i]}" || die "${names[i]} did not open port ${rtmp[i]}"
    done
    local total=$((4 + ramp + warmup + measure + linger_s)) logs="$out/logs/cluster"
    "$bench" rtmp-publish -c 1 -i "$media" -r "rtmp://127.0.0.1:$origin/live/livestream" \
        -d "$total" --interval 5 >"$logs-$players-publish.log" 2>&1 &
    local pub=$!
    started+=("$pub")
    sleep 4
    local idle_origin idle_edges
    idle_origin=$(rss_kb "${pids[0]}")
    idle_edges=$(rss_kb "${pids[1]}" "${pids[2]}")
    local counts=($((players / 2)) $((players - players / 2))) url cmd=rtmp-play
    for i in 0 1; do
        url="rtmp://127.0.0.1:${edge_rtmp[i]}/live/livestream"
        if [[ "$proto" == flv ]]; then
            url="http://127.0.0.1:${edge_http[i]}/live/livestream.flv"
            cmd=flv-play
        fi
        "$bench" "$cmd" -c "${counts[i]}" -r "$url" -s "$ramp" -d "$((ramp + warmup + measure + linger_s - 2))" \
            --interval 5 --workers "$load_workers" >"$logs-$players-play-$((i + 1)).log" 2>&1 &
        loads+=($!)
        started+=($!)
    done
    sleep "$((ramp + warmup))"
    local t0 t1 o0 o1 e0 e1 l0 l1
    t0=$(date +%s.%N)
    o0=$(cpu_ticks "${pids[0]}")
    e0=$(cpu_ticks "${pids[1]}" "${pids[2]}")
    l0=$(cpu_ticks "${loads[@]}")
    sleep "$measure"
    t1=$(date +%s.%N)
    o1=$(cpu_ticks "${pids[0]}")
    e1=$(cpu_ticks "${pids[1]}" "${pids[2]}")
    l1=$(cpu_ticks "${loads[@]}")
    local rss_origin rss_edges conn_origin conn_edges=0 port
    rss_origin=$(rss_kb "${pids[0]}")
    rss_edges=$(rss_kb "${pids[1]}" "${pids[2]}")
    conn_origin=$(connections "$origin")
    for port in "${edge_rtmp[@]}"; do
        conn_edges=$((conn_edges + $(connections "$port")))
    done
    if [[ "$proto" == flv ]]; then
        for port in "${edge_http[@]}"; do
            conn_edges=$((conn_edges + $(connections "$port")))
        done
    fi
    for i in 0 1; do
        wait "${loads[i]}" || true
        stop_pid "${loads[i]}"
    done
    wait "$pub" || true
    stop_pid "$pub"
    for i in 2 1 0; do
        stop_pid "${pids[i]}"
    done
    # Both load tools' players as one: Mbps, alive and failed add up, latency is the worse.
    local mbps=0 p50=0 p99=0 alive=0 failed=0 v f stream_mbps
    for f in "$logs-$players-play-1.log" "$logs-$players-play-2.log"; do
        v=$(summary_field "$f" mbps)
        [[ -n "$v" ]] || die "cluster at $players: no SUMMARY (see $f)"
        mbps=$(awk -v a="$mbps" -v b="$v" 'BEGIN { print a + b }')
        v=$(summary_field "$f" lat_p50_ms)
        ((${v:-0} > p50)) && p50=$v
        v=$(summary_field "$f" lat_p99_ms)
        ((${v:-0} > p99)) && p99=$v
        v=$(summary_field "$f" alive)
        alive=$((alive + ${v:-0}))
        v=$(summary_field "$f" failed)
        failed=$((failed + ${v:-0}))
    done
    stream_mbps=$(summary_field "$logs-$players-publish.log" mbps)
    [[ -n "$stream_mbps" ]] || die "cluster at $players: no SUMMARY (see $logs-$players-publish.log)"
    emit_row ringcast-origin "$players" "$t0" "$t1" "$o0" "$o1" "$l0" "$l1" "$rss_origin" \
        "$idle_origin" "$conn_origin" "$stream_mbps" "$mbps" "$p50" "$p99" "$alive" "$failed" "" ""
    emit_row ringcast-edges "$players" "$t0" "$t1" "$e0" "$e1" "$l0" "$l1" "$rss_edges" \
        "$idle_edges" "$conn_edges" "$stream_mbps" "$mbps" "$p50" "$p99" "$alive" "$failed" "" ""
    # The cluster's ticks are the origin's and the edges', as sampled.
    local a0 a1
    a0=$(awk -v o="$o0" -v e="$e0" 'BEGIN { split(o, x, " "); split(e, y, " "); print x[1] + y[1], x[2] + y[2] }')
    a1=$(awk -v o="$o1" -v e="$e1" 'BEGIN { split(o, x, " "); split(e, y, " "); print x[1] + y[1], x[2] + y[2] }')
    emit_row ringcast-cluster "$players" "$t0" "$t1" "$a0" "$a1" "$l0" "$l1" \
        "$((rss_origin + rss_edges))" "$((idle_origin + idle_edges))" "$((conn_origin + conn_edges))" \
        "$stream_mbps" "$mbps" "$p50" "$p99" "$alive" "$failed" "" ""
}

# topology.md from the CSV: per level, one server's CPU beside the cluster's total, both per
# 1000 players, and the origin's own CPU, which should stay flat as players grow.
topology_table() {
    echo "| Players | one server | origin + 2 edges, total | per 1000 players: one / cluster | origin |"
    echo "|---:|---:|---:|---:|---:|"
    awk -F, 'NR > 1 { cpu[$3 "," $1] = $4; if (!($3 in seen)) { seen[$3] = 1; order[n++] = $3 } }
        END {
            for (i = 0; i < n; i++) {
                p = order[i]; one = cpu[p ",ringcast"]; all = cpu[p ",ringcast-cluster"]
                printf "| %d | %.1f%% | %.1f%% | %.2f%% / %.2f%% | %.1f%% |\n", p, one, all,
                    one / p * 1000, all / p * 1000, cpu[p ",ringcast-origin"]
            }
        }' "$csv"
}

# --soak MINUTES: ringcast alone under player churn, for leaks. Publishes the media, then for
# MINUTES runs back-to-back rounds of SOAK_PLAYERS players (default 500; ringcast-bench
# rtmp-play, 5 s ramp, 30 s each), sampling the server's RSS and connections every 10 s into
# soak.csv, after a first warm-up round (the allocator and the rings are then at their working
# size). Growth is the mean RSS of the last three samples with players connected against the
# first three: the same state, so the difference is what the churn leaked (a sample with no
# player depends on when the allocator last gave memory back, megabytes either way). RSS with
# no player is reported too, after the warm-up round and after the last round. It also asks the
# HTTP API's leak check (/api/v1/valgrind?check=added) at start and end when it answers.
# Fails when RSS grew by more than SOAK_MAX_GROWTH_MB (default 16 MB).
soak() {
    local minutes=$1 players=${SOAK_PLAYERS:-500} bound_mb=${SOAK_MAX_GROWTH_MB:-16}
    if ! [[ "$minutes" =~ ^[0-9]+$ ]] || ((minutes == 0)); then
        die "--soak takes whole minutes above 0"
    fi
    local port=${rtmp_port[ringcast]} leak_url="http://127.0.0.1:${http_port[ringcast]}/api/v1/valgrind?check=added"
    local url="rtmp://127.0.0.1:$port/live/livestream" logs="$out/logs" csv_soak="$out/soak.csv"
    leak_check() {
        local r
        r=$(curl -s -m 5 "$leak_url" 2>/dev/null) || r=""
        if [[ "$r" == "{"* ]]; then
            echo "$r"
        else
            echo "unavailable (no answer from $leak_url; the endpoint is not in this build)"
        fi
    }
    round() {
        "$bench" rtmp-play -c "$players" -r "$url" -s 5 -d 30 --interval 5 \
            >"$logs/soak-round-$1.log" 2>&1 &
        round_pid=$!
        started+=("$round_pid")
    }
    echo "== soak: $minutes min of $players players per 30 s round, RSS bound +$bound_mb MB"
    # Info level, whatever bench.conf says: every connection's end is logged with its reason.
    RUST_LOG=info,compio=warn start_server ringcast soak
    "$bench" rtmp-publish -c 1 -i "$media" -r "$url" -d "$((minutes * 60 + 120))" \
        --interval 60 >"$logs/soak-publish.log" 2>&1 &
    local pub=$!
    started+=("$pub")
    sleep 4
    local idle_kb round_pid rounds=1
    idle_kb=$(rss_kb "$server_pid")
    round 0
    wait "$round_pid" || true
    stop_pid "$round_pid"
    sleep 2
    local start_kb start_leak t0 now
    start_kb=$(rss_kb "$server_pid")
    start_leak=$(leak_check)
    echo "seconds,rss_kb,connections,round" >"$csv_soak"
    t0=$(date +%s)
    round "$rounds"
    while now=$(date +%s) && ((now - t0 < minutes * 60)); do
        sleep 10
        kill -0 "$server_pid" 2>/dev/null || die "soak: ringcast exited (see $logs/ringcast-soak.log)"
        echo "$(($(date +%s) - t0)),$(rss_kb "$server_pid"),$(connections "$port"),$rounds" |
            tee -a "$csv_soak"
        if ! kill -0 "$round_pid" 2>/dev/null; then
            stop_pid "$round_pid"
            if (($(date +%s) - t0 < minutes * 60)); then
                rounds=$((rounds + 1))
                round "$rounds"
            fi
        fi
    done
    wait "$round_pid" || true
    stop_pid "$round_pid"
    sleep 2
    local end_kb end_leak max_kb failed=0 r f
    end_kb=$(rss_kb "$server_pid")
    end_leak=$(leak_check)
    max_kb=$(awk -F, 'NR > 1 && $2 > m {m = $2} END {print m + 0}' "$csv_soak")
    for r in $(seq 0 "$rounds"); do
        f=$(summary_field "$logs/soak-round-$r.log" failed)
        failed=$((failed + ${f:-0}))
    done
    stop_pid "$pub"
    stop_pid "$server_pid"
    local early_kb late_kb growth_kb served=$(((rounds + 1) * players))
    read -r early_kb late_kb < <(awk -F, 'NR > 1 && $3 > 1 {v[n++] = $2}
        END {
            if (n < 6) { print 0, 0; exit }
            print int((v[0] + v[1] + v[2]) / 3), int((v[n - 3] + v[n - 2] + v[n - 1]) / 3)
        }' "$csv_soak")
    ((early_kb > 0)) || die "soak: too few samples with players; soak for 2 minutes or more"
    growth_kb=$((late_kb - early_kb))
    echo "soak: $minutes min, $((rounds + 1)) rounds, $served player connections, $failed failed"
    echo "soak: RSS with players: first samples $early_kb kB, last samples $late_kb kB," \
        "peak $max_kb kB; growth $growth_kb kB ($((growth_kb * 1024 / served)) bytes per player connection)"
    echo "soak: RSS with no player: publisher alone $idle_kb kB, after the warm-up round" \
        "$start_kb kB, after the last round $end_kb kB"
    echo "soak: leak check at start: $start_leak"
    echo "soak: leak check at end:   $end_leak"
    echo "soak: players cut for not reading: $(grep -c 'stopped reading' "$logs/ringcast-soak.log" || true)"
    echo "soak: samples in $csv_soak, logs in $logs"
    ((growth_kb <= bound_mb * 1024)) ||
        die "soak: RSS grew by $growth_kb kB, beyond the bound of $bound_mb MB"
    ((failed == 0)) || die "soak: $failed player connections failed"
    echo "soak: passed (RSS growth within $bound_mb MB)"
}
[[ -n "${soak_minutes:-}" ]] && { soak "$soak_minutes"; exit 0; }

# Seconds as "1 min 05 s" or "42 s".
duration() {
    local s=$1
    if ((s >= 60)); then
        printf '%d min %02d s' $((s / 60)) $((s % 60))
    else
        printf '%d s' "$s"
    fi
}

read -r -a level_list <<<"$levels"
read -r -a server_list <<<"$servers"
runs_total=$((${#level_list[@]} * ${#server_list[@]}))
[[ "$topology" == edge ]] && runs_total=$((runs_total * 2))
# A run is the publisher's time alone, the ramp, the warm-up, the window and the linger
# after it; after the first run, the mean of the runs so far.
run_guess=$((preroll + ramp + warmup + measure + linger_s))
runs_done=0
level_no=0
bench_t0=$(date +%s)
for players in "${level_list[@]}"; do
    level_no=$((level_no + 1))
    for name in "${server_list[@]}"; do
        per_run=$run_guess
        ((runs_done)) && per_run=$((($(date +%s) - bench_t0) / runs_done))
        echo "-- [run $((runs_done + 1))/$runs_total, level $level_no/${#level_list[@]}]" \
            "$name, $players $proto players: about $(duration "$per_run") this run," \
            "$(duration $((per_run * (runs_total - runs_done)))) left"
        measure_one "$name" "$players"
        runs_done=$((runs_done + 1))
    done
    if [[ "$topology" == edge ]]; then
        echo "-- [run $((runs_done + 1))/$runs_total, level $level_no/${#level_list[@]}]" \
            "origin + 2 edges, $players $proto players on the edges"
        measure_edge "$players"
        runs_done=$((runs_done + 1))
    fi
done
echo "== $runs_total runs in $(duration $(($(date +%s) - bench_t0)))"

echo
"$bench" report --csv "$csv" --svg "$out/chart.svg" | tee "$out/table.md"
if [[ -f "$out/notes.md" ]]; then
    echo | tee -a "$out/table.md"
    tee -a "$out/table.md" <"$out/notes.md"
fi
echo
if [[ "$topology" == edge ]]; then
    topology_table | tee "$out/topology.md"
    echo
    echo "== $out/topology.md"
fi
echo "== $out/results.csv, $out/table.md, $out/chart.svg"
