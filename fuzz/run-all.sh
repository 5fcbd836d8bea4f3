#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for SECONDS each, one after the other,
# starting from its committed seeds (fuzz/seeds/TARGET) plus whatever an earlier run left in
# fuzz/corpus/TARGET. Fails, after running them all, when any target found a crash, a hang
# (an input taking over 10 s) or a leak; the input is saved under fuzz/artifacts/TARGET/.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); stable Rust with RUSTC_BOOTSTRAP=1.
#
#   fuzz/run-all.sh 30      # CI
#   fuzz/run-all.sh 600     # the 10 minutes per target a release gets
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run-all.sh SECONDS}
[[ $seconds =~ ^[0-9]+$ ]] || {
    echo "run-all.sh: SECONDS must be a whole number, not '$seconds'" >&2
    exit 2
}
export RUSTC_BOOTSTRAP=1

targets=()
for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
done
((${#targets[@]})) || {
    echo "run-all.sh: no targets in fuzz/fuzz_targets" >&2
    exit 2
}

# One build of them all first, so that each target's time is spent fuzzing.
cargo fuzz build

failed=()
for t in "${targets[@]}"; do
    corpus=(corpus/"$t")
    mkdir -p corpus/"$t"
    if [[ -d seeds/$t ]]; then
        corpus+=(seeds/"$t")
    else
        echo "run-all.sh: warning: $t has no seeds/$t, fuzzing from an empty corpus" >&2
    fi
    echo "== $t: ${seconds}s"
    if ! cargo fuzz run "$t" "${corpus[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "run-all.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "run-all.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
