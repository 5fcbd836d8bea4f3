#!/usr/bin/env bash
# Kernel settings a media server needs, as SRS's performance page advises: UDP socket buffers,
# the packet backlog, the accept backlog and the file-descriptor limit. Queries them, applies
# them now, persists them for the next boot, and watches UDP drops and socket queues.
#
# Reads and writes the kernel through files only (never the sysctl binary), so the test suite
# can run every subcommand against a fake tree:
#   ROOT       root of the file system (default: empty, meaning /)
#   PROC_ROOT  where proc is mounted (default: $ROOT/proc); all it reads is there
#   SYSCTL_D   where `persist` writes 90-ringcast.conf (default: $ROOT/etc/sysctl.d)
# (irq-affinity.sh also reads sysfs, moved by SYS_ROOT.)
set -euo pipefail

ROOT=${ROOT:-}
PROC_ROOT=${PROC_ROOT:-$ROOT/proc}
SYSCTL_D=${SYSCTL_D:-$ROOT/etc/sysctl.d}
PROG=$(basename "$0")
PERSIST_FILE=90-ringcast.conf

usage() {
    cat <<EOF
Usage: $PROG [--dry-run] COMMAND [ARGS]

Commands:
  query                      current values and the recommendation beside each
  apply [--udp-buffer SIZE]  raise every setting below its recommendation, now (root)
  persist [--udp-buffer SIZE]
                             write $SYSCTL_D/$PERSIST_FILE, loaded at every boot
  watch [SECONDS]            UDP packets, buffer errors and their rates over SECONDS
                             (default 30), like: netstat -suna; sleep 30; netstat -suna
  queues                     UDP sockets' Recv-Q, Send-Q and drops, like: netstat -lpun

Options:
  --dry-run                  print what apply or persist would change, change nothing
  --udp-buffer SIZE          UDP buffer size for the rmem/wmem settings: bytes, or with a
                             K, M or G suffix (default 16M)

Environment: ROOT, PROC_ROOT, SYSCTL_D move the files it reads and writes.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 2
}

# SIZE with an optional K/M/G suffix (powers of 1024), printed in bytes.
parse_size() {
    local s=$1 n unit
    if [[ ! $s =~ ^([0-9]+)([kKmMgG]?)$ ]]; then
        die "--udp-buffer: \`$s' is not a size such as 16M, 512K or 8388608"
    fi
    n=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2]}
    case $unit in
        k | K) n=$((n * 1024)) ;;
        m | M) n=$((n * 1024 * 1024)) ;;
        g | G) n=$((n * 1024 * 1024 * 1024)) ;;
    esac
    if ((n < 4096 || n > 2147483647)); then
        die "--udp-buffer: $s is outside 4K..2G-1, which the kernel accepts"
    fi
    echo "$n"
}

# The settings, their recommended values and why, in the order they are shown.
KEYS=(
    net.core.rmem_max
    net.core.rmem_default
    net.core.wmem_max
    net.core.wmem_default
    net.core.netdev_max_backlog
    net.core.somaxconn
    fs.file-max
)
declare -A WANT WHY
set_recommendations() {
    local udp=$1
    WANT[net.core.rmem_max]=$udp
    WANT[net.core.rmem_default]=$udp
    WANT[net.core.wmem_max]=$udp
    WANT[net.core.wmem_default]=$udp
    WANT[net.core.netdev_max_backlog]=16384
    WANT[net.core.somaxconn]=4096
    WANT[fs.file-max]=1048576
    WHY[net.core.rmem_max]="largest UDP receive buffer a socket may ask for (rcvbuf)"
    WHY[net.core.rmem_default]="receive buffer of sockets that ask for none"
    WHY[net.core.wmem_max]="largest UDP send buffer a socket may ask for (sndbuf)"
    WHY[net.core.wmem_default]="send buffer of sockets that ask for none"
    WHY[net.core.netdev_max_backlog]="packets queued per CPU before the stack takes them"
    WHY[net.core.somaxconn]="accept backlog, for bursts of players connecting"
    WHY[fs.file-max]="descriptors system-wide; every player holds one"
}

key_file() {
    echo "$PROC_ROOT/sys/${1//.//}"
}

# Prints the current value, or nothing when the kernel does not have the setting.
current() {
    local f v
    f=$(key_file "$1")
    if [[ -r $f ]]; then
        # Some settings hold several numbers; the first is the one that matters here.
        read -r v _ <"$f" && echo "$v"
    fi
}

# Prints why this looks like a container, and fails when it does not.
container_evidence() {
    local f
    for f in "$ROOT/.dockerenv" "$ROOT/run/.containerenv"; do
        if [[ -e $f ]]; then
            echo "$f exists"
            return 0
        fi
    done
    if grep -qE '/(docker|kubepods|containerd|libpod|lxc)' "$PROC_ROOT/1/cgroup" 2>/dev/null; then
        echo "$PROC_ROOT/1/cgroup names a container runtime"
        return 0
    fi
    if tr '\0' '\n' <"$PROC_ROOT/1/environ" 2>/dev/null | grep -q '^container='; then
        echo "process 1 has container= in its environment"
        return 0
    fi
    return 1
}

container_note() {
    local why
    if why=$(container_evidence); then
        cat <<EOF
note: this runs inside a container ($why). These are the host's kernel settings:
      set them on the host (run this script there), and start the container with
      --network=host so that ringcast's sockets use the host's network stack.
EOF
    fi
}

cmd_query() {
    local k cur status
    echo "Kernel settings for ringcast (from $PROC_ROOT/sys):"
    printf '%-28s %12s %12s  %-7s %s\n' setting current recommended status why
    for k in "${KEYS[@]}"; do
        cur=$(current "$k")
        if [[ -z $cur ]]; then
            status=missing
            cur=-
        elif ((cur >= WANT[$k])); then
            status=ok
        else
            status=raise
        fi
        printf '%-28s %12s %12s  %-7s %s\n' "$k" "$cur" "${WANT[$k]}" "$status" "${WHY[$k]}"
    done
    container_note
    echo "Raise them now: $PROG apply; keep them after a reboot: $PROG persist"
}

cmd_apply() {
    local k cur f failed=0 changed=0
    container_note
    for k in "${KEYS[@]}"; do
        cur=$(current "$k")
        if [[ -z $cur ]]; then
            echo "skip $k: this kernel does not have it"
            continue
        fi
        if ((cur >= WANT[$k])); then
            echo "keep $k = $cur (at least ${WANT[$k]})"
            continue
        fi
        if ((DRY_RUN)); then
            echo "would set $k: $cur -> ${WANT[$k]}"
            continue
        fi
        f=$(key_file "$k")
        if { echo "${WANT[$k]}" >"$f"; } 2>/dev/null; then
            echo "set $k: $cur -> ${WANT[$k]}"
            changed=1
        else
            echo "cannot set $k: writing $f failed (root on the host is needed)" >&2
            failed=1
        fi
    done
    if ((DRY_RUN)); then
        echo "dry run: nothing changed"
    elif ((changed)); then
        echo "These last until reboot; $PROG persist keeps them."
    fi
    return "$failed"
}

persist_text() {
    local k cur v
    echo "# ringcast: kernel settings for a media server, written by tuning/sysctl.sh persist."
    echo "# systemd-sysctl loads this file at every boot; \`sysctl --system\` loads it now."
    for k in "${KEYS[@]}"; do
        cur=$(current "$k")
        v=${WANT[$k]}
        # Never write a value below what the machine already runs with.
        if [[ -n $cur ]] && ((cur > v)); then
            v=$cur
        fi
        echo "$k = $v"
    done
}

cmd_persist() {
    local path="$SYSCTL_D/$PERSIST_FILE" text
    container_note
    text=$(persist_text)
    if [[ -f $path ]] && [[ $(<"$path") == "$text" ]]; then
        echo "$path is up to date"
        return 0
    fi
    if ((DRY_RUN)); then
        echo "would write $path:"
        echo "$text"
        echo "dry run: nothing changed"
        return 0
    fi
    mkdir -p "$SYSCTL_D" || die "cannot create $SYSCTL_D"
    echo "$text" >"$path" || die "cannot write $path"
    echo "wrote $path:"
    echo "$text"
    echo "It loads at boot (systemd-sysctl.service reads $SYSCTL_D/*.conf)."
    echo "To load it now: sysctl --system   (or: sysctl -p $path)"
}

# Prints the Udp counters of /proc/net/snmp as NAME=VALUE lines.
udp_counters() {
    local snmp="$PROC_ROOT/net/snmp"
    [[ -r $snmp ]] || die "cannot read $snmp"
    awk '$1 == "Udp:" { if (!n++) { for (i = 2; i <= NF; i++) name[i] = $i } else { for (i = 2; i <= NF; i++) print name[i] "=" $i } }' "$snmp"
}

cmd_watch() {
    local seconds=$1 before after
    [[ $seconds =~ ^[1-9][0-9]*$ ]] || die "watch: \`$seconds' is not a whole number of seconds"
    before=$(udp_counters)
    [[ -n $before ]] || die "no Udp counters in $PROC_ROOT/net/snmp"
    echo "Watching UDP for $seconds s ($PROC_ROOT/net/snmp, like netstat -suna; sleep $seconds; netstat -suna)"
    sleep "$seconds"
    after=$(udp_counters)
    awk -v secs="$seconds" -v before="$before" -v after="$after" '
        function load(text, into,    lines, n, i, kv) {
            n = split(text, lines, "\n")
            for (i = 1; i <= n; i++) { split(lines[i], kv, "="); into[kv[1]] = kv[2] }
        }
        function row(key, label) {
            if (!(key in b) || !(key in a)) { printf "%-26s %12s\n", label, "n/a"; return }
            d = a[key] - b[key]
            delta[key] = d
            printf "%-26s %12d %12d %10d %12.1f\n", label, b[key], a[key], d, d / secs
        }
        BEGIN {
            load(before, b); load(after, a)
            printf "%-26s %12s %12s %10s %12s\n", "counter", "before", "after", "delta", "per second"
            row("InDatagrams", "packets received")
            row("OutDatagrams", "packets sent")
            row("RcvbufErrors", "receive buffer errors")
            row("SndbufErrors", "send buffer errors")
            row("InErrors", "packet receive errors")
            row("NoPorts", "packets to unknown port")
            if (delta["RcvbufErrors"] > 0)
                print "Receive buffer errors grew: datagrams were dropped because a socket'"'"'s receive buffer was full. Raise rtc_server { rcvbuf } and net.core.rmem_max (sysctl.sh apply), and check queues."
            if (delta["SndbufErrors"] > 0)
                print "Send buffer errors grew: sends failed because a socket'"'"'s send buffer was full. Raise rtc_server { sndbuf } and net.core.wmem_max (sysctl.sh apply)."
            if (delta["RcvbufErrors"] <= 0 && delta["SndbufErrors"] <= 0)
                print "No UDP buffer errors in " secs " s."
        }'
}

# UDP sockets from /proc/net/udp and udp6, with the process that owns each (from the fd
# links under /proc/PID/fd, as netstat -p finds them).
cmd_queues() {
    local owners f files=()
    for f in "$PROC_ROOT/net/udp" "$PROC_ROOT/net/udp6"; do
        [[ -r $f ]] && files+=("$f")
    done
    ((${#files[@]})) || die "cannot read $PROC_ROOT/net/udp"
    # "socket:[INODE] /proc/PID/fd" per socket descriptor; unreadable processes are skipped.
    owners=$(find "$PROC_ROOT" -mindepth 3 -maxdepth 3 -path "$PROC_ROOT/[0-9]*/fd/*" \
        -lname 'socket:*' -printf '%l %h\n' 2>/dev/null || true)
    awk -v owners="$owners" -v proc="$PROC_ROOT" '
        function hexval(h,    i, v) {
            v = 0; h = tolower(h)
            for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
            return v
        }
        # The kernel prints each 32-bit word of the address in host (little-endian) order.
        function word_bytes(w,    i, out) {
            out = ""
            for (i = 7; i >= 1; i -= 2) out = out substr(w, i, 2)
            return out
        }
        function ipv4(h,    b) {
            b = word_bytes(h)
            return hexval(substr(b, 1, 2)) "." hexval(substr(b, 3, 2)) "." hexval(substr(b, 5, 2)) "." hexval(substr(b, 7, 2))
        }
        function ipv6(h,    b, i, g, n, best, bestlen, run, start, out) {
            b = ""
            for (i = 0; i < 4; i++) b = b word_bytes(substr(h, i * 8 + 1, 8))
            for (i = 0; i < 8; i++) g[i] = sprintf("%x", hexval(substr(b, i * 4 + 1, 4)))
            if (substr(b, 1, 24) == "00000000000000000000ffff") return "::ffff:" ipv4(word_bytes(substr(b, 25, 8)))
            best = -1; bestlen = 1; run = 0
            for (i = 0; i < 8; i++) {
                if (g[i] == "0") { if (!run++) start = i; if (run > bestlen) { best = start; bestlen = run } }
                else run = 0
            }
            out = ""
            for (i = 0; i < 8; i++) {
                if (i == best) { out = out "::"; i += bestlen - 1; continue }
                if (out != "" && substr(out, length(out)) != ":") out = out ":"
                out = out g[i]
            }
            return out
        }
        function endpoint(a,    p) {
            split(a, p, ":")
            return (length(p[1]) == 8 ? ipv4(p[1]) : "[" ipv6(p[1]) "]") ":" hexval(p[2])
        }
        BEGIN {
            n = split(owners, lines, "\n")
            for (i = 1; i <= n; i++) {
                if (split(lines[i], f, " ") < 2) continue
                inode = f[1]; gsub(/[^0-9]/, "", inode)
                pid = f[2]; sub(/\/fd$/, "", pid); sub(/.*\//, "", pid)
                if (inode in owner) continue
                comm = "?"
                if ((getline c < (proc "/" pid "/comm")) > 0) comm = c
                close(proc "/" pid "/comm")
                owner[inode] = pid "/" comm
            }
            printf "%-5s %8s %8s  %-46s %8s  %s\n", "Proto", "Recv-Q", "Send-Q", "Local Address", "Drops", "PID/Program"
        }
        FNR == 1 { proto = (FILENAME ~ /6$/) ? "udp6" : "udp"; next }
        {
            split($5, q, ":")
            who = ($10 in owner) ? owner[$10] : "-"
            drops = $NF + 0
            printf "%-5s %8d %8d  %-46s %8d  %s\n", proto, hexval(q[2]), hexval(q[1]), endpoint($2), drops, who
            sockets++
            if (hexval(q[2]) > 0) busy++
            if (drops > 0) dropped++
        }
        END {
            if (!sockets) print "no UDP sockets"
            print "Recv-Q: bytes received but not yet read by the program; a queue that stays high means it reads too slowly."
            print "Send-Q: bytes the kernel has yet to send. Drops: datagrams lost because the receive buffer was full."
            if (dropped) print "Some sockets dropped datagrams: raise rtc_server { rcvbuf } and net.core.rmem_max (sysctl.sh apply)."
        }' "${files[@]}"
}

DRY_RUN=0
UDP_BUFFER=16M
command=
args=()
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --udp-buffer)
            (($# >= 2)) || die "--udp-buffer needs a size, e.g. 16M"
            UDP_BUFFER=$2
            shift
            ;;
        --udp-buffer=*) UDP_BUFFER=${1#*=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) die "unknown option $1 (see $PROG --help)" ;;
        *)
            if [[ -z $command ]]; then
                command=$1
            else
                args+=("$1")
            fi
            ;;
    esac
    shift
done

udp_bytes=$(parse_size "$UDP_BUFFER")
set_recommendations "$udp_bytes"
if [[ $command != watch ]] && ((${#args[@]})); then
    die "$command takes no argument \`${args[0]}'"
fi
case $command in
    query) cmd_query ;;
    apply) cmd_apply ;;
    persist) cmd_persist ;;
    watch)
        ((${#args[@]} <= 1)) || die "watch takes one argument, SECONDS"
        cmd_watch "${args[0]:-30}"
        ;;
    queues) cmd_queues ;;
    "")
        usage >&2
        exit 2
        ;;
    *) die "unknown command \`$command' (see $PROG --help)" ;;
esac
