#!/usr/bin/env bash
# Runs the hardening campaigns of docs/reliability.md and prints one table of results.
#
#   bash hardening/run.sh full|ci [campaign ...]
#
# `make hardening` runs every campaign at full length (about two hours on 2 cores, most of
# it fuzzing and valgrind); `make hardening-ci` the short forms (what .ci/run runs); and
# `make hardening-<campaign>` one of them in full. Each campaign is hardening/<name>.sh,
# which sets up what it needs, exits non-zero when its pass criterion fails and ends with a
# line `HARDENING <name> PASS|FAIL <seconds>s <figures>`.
#
# Every campaign runs even if an earlier one failed; each has a time limit (a hang fails
# it with a message instead of eating the budget), its output goes to
# build/hardening/<mode>/<name>.log as well as the terminal, and the run fails if any did.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-}
case $mode in
    full | ci) shift ;;
    *) echo "usage: $0 full|ci [campaign ...]" >&2; exit 2 ;;
esac

all=(security threads fuzz refleak memcheck chaos)
[ "$mode" = full ] && all+=(asan)
campaigns=("$@")
[ ${#campaigns[@]} -eq 0 ] && campaigns=("${all[@]}")

# Time limits: generous multiples of the measured durations in docs/reliability.md.
limit() {
    case "$mode:$1" in
        full:fuzz) echo 75m ;;
        full:memcheck) echo 150m ;;
        full:*) echo 45m ;;
        ci:memcheck | ci:refleak) echo 8m ;;
        ci:*) echo 6m ;;
    esac
}

logdir=build/hardening/$mode
mkdir -p "$logdir"
results=()
failed=0
started=$SECONDS
for name in "${campaigns[@]}"; do
    script=hardening/$name.sh
    if [ "$name" = asan ]; then
        cmd=(make asan-test)
    elif [ -f "$script" ]; then
        cmd=(bash "$script" "$mode")
    else
        echo "unknown campaign '$name' (known: ${all[*]} asan)" >&2
        exit 2
    fi
    t0=$SECONDS rc=0
    printf '\n==================== hardening %s (%s, limit %s) ====================\n' "$name" "$mode" "$(limit "$name")"
    timeout --kill-after=30s "$(limit "$name")" "${cmd[@]}" 2>&1 | tee "$logdir/$name.log" || rc=${PIPESTATUS[0]}
    line=$(grep -a '^HARDENING ' "$logdir/$name.log" | tail -n1 || true)
    case $rc in
        0) verdict=PASS ;;
        124 | 137) verdict="TIMED OUT after $(limit "$name")"; failed=1 ;;
        *) verdict="FAIL (exit $rc)"; failed=1 ;;
    esac
    [ "$name" = asan ] && [ $rc -eq 0 ] && line="HARDENING asan PASS $((SECONDS - t0))s the test suite under ASan+UBSan"
    results+=("$(printf '%-9s %-22s %5ss  %s' "$name" "$verdict" "$((SECONDS - t0))" "${line#HARDENING }")")
done

printf '\n==================== hardening %s: summary (%ss) ====================\n' "$mode" "$((SECONDS - started))"
printf '%s\n' "${results[@]}" | tee "$logdir/summary.txt"
exit "$failed"
