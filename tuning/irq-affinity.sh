#!/usr/bin/env bash
# The NIC's queue interrupts and where they run. SRS's advice: let CPU0 take the network
# interrupts and softirqs, and run the server's workers on the other cores (ringcast's
# `cpu_affinity 1-N;`), so packet processing and the workers do not fight for one core.
#
# Works through files only, so tests can run it against a fake tree:
#   ROOT       root of the file system (default: empty, meaning /)
#   PROC_ROOT  where proc is mounted (default: $ROOT/proc): interrupts, irq/N/smp_affinity*
#   SYS_ROOT   where sysfs is mounted (default: $ROOT/sys): class/net/IF/device
set -euo pipefail

ROOT=${ROOT:-}
PROC_ROOT=${PROC_ROOT:-$ROOT/proc}
SYS_ROOT=${SYS_ROOT:-$ROOT/sys}
PROG=$(basename "$0")

usage() {
    cat <<EOF
Usage: $PROG [--dry-run] [--iface IF] [list]
       $PROG [--dry-run] [--iface IF] bind [CPUS]

Commands:
  list         the NIC queue IRQs (from $PROC_ROOT/interrupts) and the CPUs each may run on
  bind [CPUS]  bind them to CPUS: a list such as 0, 0-1 or 0,2, or a hex mask such as 0x1
               (default 0, that is CPU0). Needs root, and irqbalance stopped.

Options:
  --iface IF   only this interface (default: every interface with a device behind it)
  --dry-run    print what bind would change, change nothing

Environment: ROOT, PROC_ROOT, SYS_ROOT move the files it reads and writes.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 2
}

# A CPU list ("0-2,5") as one CPU number per line.
expand_cpus() {
    local part lo hi
    local IFS=,
    for part in $1; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            lo=${BASH_REMATCH[1]}
            hi=${BASH_REMATCH[2]}
            ((lo <= hi)) || return 1
            seq "$lo" "$hi"
        elif [[ $part =~ ^[0-9]+$ ]]; then
            echo "$part"
        else
            return 1
        fi
    done
}

# CPUS argument (list or 0x mask) in the kernel's list form, e.g. "0-1".
normalize_cpus() {
    local arg=$1 mask cpu cpus=()
    if [[ $arg =~ ^0[xX]([0-9a-fA-F]{1,15})$ ]]; then
        mask=$((16#${BASH_REMATCH[1]}))
        ((mask)) || die "bind: mask $arg names no CPU"
        for ((cpu = 0; mask; cpu++, mask >>= 1)); do
            ((mask & 1)) && cpus+=("$cpu")
        done
    else
        local list
        list=$(expand_cpus "$arg") || die "bind: \`$arg' is not a CPU list (0, 0-1, 0,2) or a mask (0x1)"
        mapfile -t cpus < <(sort -nu <<<"$list")
    fi
    compress_cpus "${cpus[@]}"
}

# Sorted CPU numbers as a list with ranges: 0 1 2 5 -> 0-2,5.
compress_cpus() {
    local out="" start=$1 prev=$1 c
    shift
    for c in "$@" ""; do
        if [[ -n $c ]] && ((c == prev + 1)); then
            prev=$c
            continue
        fi
        out+="${out:+,}$start"
        ((prev > start)) && out+="-$prev"
        start=$c
        prev=$c
    done
    echo "$out"
}

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
    return 1
}

# Prints "IRQ IFACE NAME" for every queue interrupt of the NICs. An IRQ belongs to an
# interface when its name starts with the interface's name (eth0-TxRx-0, the usual driver
# form) or names the device behind it (virtio2-input.0, mlx5_comp0@pci:0000:3b:00.0).
# Per-device interrupts that carry no packets (config, misc, async, mailbox) are left out.
nic_irqs() {
    local dir iface dev
    local -a map=()
    for dir in "$SYS_ROOT"/class/net/*; do
        iface=$(basename "$dir")
        [[ -n $IFACE && $iface != "$IFACE" ]] && continue
        # Virtual interfaces (lo, bridges, veth) have no device and no interrupts.
        [[ -e $dir/device ]] || continue
        dev=$(basename "$(readlink -f "$dir/device")")
        map+=("$iface" "$dev")
    done
    ((${#map[@]})) || return 0
    [[ -r $PROC_ROOT/interrupts ]] || die "cannot read $PROC_ROOT/interrupts"
    awk -v map="${map[*]}" '
        BEGIN { n = split(map, m, " ") }
        $1 ~ /^[0-9]+:$/ {
            irq = $1; sub(/:$/, "", irq)
            name = $NF
            if (tolower(name) ~ /config|misc|async|mbx|mailbox|ctrl|event/) next
            for (i = 1; i < n; i += 2) {
                iface = m[i]; dev = m[i + 1]
                if (name == iface || index(name, iface "-") == 1 || index(name, iface "@") == 1 \
                    || index(name, iface "_") == 1 || index(name, dev "-") == 1 \
                    || index(name, "@pci:" dev) > 0) {
                    print irq, iface, name
                    next
                }
            }
        }' "$PROC_ROOT/interrupts"
}

irq_cpus() {
    local f="$PROC_ROOT/irq/$1/smp_affinity_list"
    if [[ -r $f ]]; then
        cat "$f"
    else
        echo "?"
    fi
}

irq_mask() {
    local f="$PROC_ROOT/irq/$1/smp_affinity"
    if [[ -r $f ]]; then
        cat "$f"
    else
        echo "?"
    fi
}

irqbalance_running() {
    local comm
    for comm in "$PROC_ROOT"/[0-9]*/comm; do
        [[ -r $comm && $(<"$comm") == irqbalance ]] && return 0
    done
    return 1
}

no_irqs() {
    echo "no NIC queue interrupts found${IFACE:+ for $IFACE} in $PROC_ROOT/interrupts"
    echo "(a virtual machine's NIC may use polling or share one interrupt; nothing to bind)"
}

cmd_list() {
    local irqs irq iface name
    irqs=$(nic_irqs)
    if [[ -z $irqs ]]; then
        no_irqs
        return 0
    fi
    printf '%-6s %-10s %-28s %-10s %s\n' IRQ iface name CPUs mask
    while read -r irq iface name; do
        printf '%-6s %-10s %-28s %-10s %s\n' "$irq" "$iface" "$name" "$(irq_cpus "$irq")" "$(irq_mask "$irq")"
    done <<<"$irqs"
    echo "Bind them to CPU0 with: $PROG bind 0; then run ringcast with cpu_affinity 1-N;"
}

cmd_bind() {
    local cpus irqs irq iface name cur failed=0 online max c
    cpus=$(normalize_cpus "$1")
    online="$SYS_ROOT/devices/system/cpu/online"
    if [[ -r $online ]]; then
        max=$(expand_cpus "$(<"$online")" | sort -n | tail -1)
        for c in $(expand_cpus "$cpus"); do
            ((c <= max)) || die "bind: CPU $c is not online (online: $(<"$online"))"
        done
    fi
    irqs=$(nic_irqs)
    if [[ -z $irqs ]]; then
        no_irqs
        return 0
    fi
    if irqbalance_running; then
        echo "warning: irqbalance is running and will move these interrupts again;" \
            "stop it first: systemctl disable --now irqbalance" >&2
    fi
    while read -r irq iface name; do
        cur=$(irq_cpus "$irq")
        if [[ $cur == "$cpus" ]]; then
            echo "keep IRQ $irq ($iface $name) on CPUs $cur"
        elif ((DRY_RUN)); then
            echo "would bind IRQ $irq ($iface $name): CPUs $cur -> $cpus"
        elif { echo "$cpus" >"$PROC_ROOT/irq/$irq/smp_affinity_list"; } 2>/dev/null; then
            echo "bound IRQ $irq ($iface $name): CPUs $cur -> $cpus"
        else
            echo "cannot bind IRQ $irq ($iface $name): the kernel refused (root is needed;" \
                "some drivers manage their queues' affinity themselves)" >&2
            failed=1
        fi
    done <<<"$irqs"
    if ((DRY_RUN)); then
        echo "dry run: nothing changed"
    fi
    local why
    if ((failed)) && why=$(container_evidence); then
        echo "note: this runs inside a container ($why): interrupts belong to the host; run $PROG there." >&2
    fi
    return "$failed"
}

DRY_RUN=0
IFACE=
command=
args=()
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --iface)
            (($# >= 2)) || die "--iface needs an interface name"
            IFACE=$2
            shift
            ;;
        --iface=*) IFACE=${1#*=} ;;
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

if [[ -n $IFACE && ! -e $SYS_ROOT/class/net/$IFACE ]]; then
    die "no interface $IFACE in $SYS_ROOT/class/net"
fi
case ${command:-list} in
    list)
        ((${#args[@]} == 0)) || die "list takes no argument"
        cmd_list
        ;;
    bind)
        ((${#args[@]} <= 1)) || die "bind takes one argument, CPUS"
        cmd_bind "${args[0]:-0}"
        ;;
    *) die "unknown command \`$command' (see $PROG --help)" ;;
esac
