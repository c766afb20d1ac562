# Shared functions of the bench/ scripts (sourced). Each benchmark writes hyperfine JSON
# exports (round*.json, one "command" name per runtime) and perf stat CSV files
# (perf-<runtime>.csv) into a work directory; bench_table and bench_ratio summarize them.

bench_require_tools() {
    local missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "$0: missing: ${missing[*]} (Debian packages: runc crun hyperfine linux-perf jq; scripts/setup installs them)" >&2
        exit 1
    fi
    # perf may be installed for another kernel than the running one.
    if [[ " $* " == *" perf "* ]] && ! perf stat -e task-clock -x, -o /dev/null -- true 2>/dev/null; then
        echo "$0: 'perf stat' does not work here: $(perf stat -e task-clock -- true 2>&1 | head -2)" >&2
        exit 1
    fi
}

bench_header() {
    echo "== $1"
    echo "   $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    local r
    for r in "${runtimes[@]}"; do
        case $r in
            berth) echo "   $("$BERTH" --version | head -1) ($BERTH)" ;;
            *) echo "   $($r --version | head -1)" ;;
        esac
    done
}

# Wall-time statistics of one runtime over every round, in ms: "median p90 min n".
bench_wall() {
    local work=$1 name=$2
    jq -rs --arg name "$name" '
        [.[].results[] | select(.command == $name) | .times[]] | sort | length as $n
        | if $n == 0 then "- - - 0" else
          [ (if $n % 2 == 1 then .[($n - 1) / 2] else (.[$n / 2 - 1] + .[$n / 2]) / 2 end),
            .[(($n * 0.9) | ceil) - 1], .[0] ]
          | map(. * 1000 * 100 | round / 100 | tostring) + [$n | tostring] | join(" ") end
    ' "$work"/round*.json
}

# perf stat means of one runtime: "task-clock-ms context-switches page-faults".
bench_perf() {
    awk -F, '
        $3 == "task-clock" { t = $1 }
        $3 == "context-switches" { c = $1 }
        $3 == "page-faults" { p = $1 }
        END { printf "%.2f %.1f %.0f\n", t, c, p }
    ' "$1/perf-$2.csv"
}

bench_table() {
    local work=$1
    shift
    echo
    printf '%-8s %10s %10s %10s %12s %14s %12s\n' runtime "median ms" "p90 ms" "min ms" "CPU ms" "ctx switches" "page faults"
    local r
    for r in "$@"; do
        read -r med p90 min n <<<"$(bench_wall "$work" "$r")"
        read -r cpu ctx pf <<<"$(bench_perf "$work" "$r")"
        printf '%-8s %10s %10s %10s %12s %14s %12s\n' "$r" "$med" "$p90" "$min" "$cpu" "$ctx" "$pf"
    done
    echo "(wall: $n runs each over all rounds; CPU ms = perf task-clock, mean of the perf runs)"
}

# bench_ratio WORK A B: A/B for median wall time and CPU time.
bench_ratio() {
    local work=$1 a=$2 b=$3
    local med_a med_b cpu_a cpu_b x
    read -r med_a x <<<"$(bench_wall "$work" "$a")"
    read -r med_b x <<<"$(bench_wall "$work" "$b")"
    read -r cpu_a x <<<"$(bench_perf "$work" "$a")"
    read -r cpu_b x <<<"$(bench_perf "$work" "$b")"
    awk -v ma="$med_a" -v mb="$med_b" -v ca="$cpu_a" -v cb="$cpu_b" -v a="$a" -v b="$b" \
        'BEGIN { printf "\n%s/%s: median wall %.2fx, CPU %.2fx\n", a, b, ma / mb, ca / cb }'
}

bench_explain_crun_hybrid() {
    case $1 in
        *hybrid*)
            cat >&2 <<'MSG'
crun refuses hybrid cgroup hosts while cgroup2 offers a controller (here: hugetlb).
Take hugetlb away from cgroup2 by mounting it as a v1 hierarchy (once per boot):
    mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
That fails with EBUSY while a cgroup.subtree_control under /sys/fs/cgroup/unified lists hugetlb;
`bench/run-true --mount-hugetlb` removes it there (deepest first) and mounts.
MSG
            ;;
    esac
}

# hugetlb as a cgroup v1 hierarchy, for crun on a hybrid host (see bench/run-true).
HUGETLB_V1=/sys/fs/cgroup/hugetlb
HUGETLB_V2=/sys/fs/cgroup/unified

# The hierarchy id and cgroup count of hugetlb from /proc/cgroups ("0 N" when on cgroup2).
hugetlb_hierarchy() {
    awk '$1 == "hugetlb" { print $2, $3 }' /proc/cgroups
}

# wait_for CMD...: retries CMD for up to 5 s (cgroups die asynchronously after rmdir/umount).
wait_for() {
    local i
    for i in $(seq 50); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

hugetlb_on_v2() { [ "$(hugetlb_hierarchy | cut -d' ' -f1)" = 0 ]; }
hugetlb_v1_empty() { [ "$(hugetlb_hierarchy | cut -d' ' -f2)" = 1 ]; }

# bench_mount_hugetlb STATEFILE: takes hugetlb away from cgroup2 and mounts it at
# /sys/fs/cgroup/hugetlb. Records in STATEFILE what it changed, for bench_unmount_hugetlb.
# Does nothing if it is mounted already.
bench_mount_hugetlb() {
    local state=$1
    : >"$state"
    if grep -q " $HUGETLB_V1 " /proc/self/mountinfo; then
        return 0
    fi
    if [ -f "$HUGETLB_V2/cgroup.subtree_control" ]; then
        # Deepest directories first: a parent cannot drop a controller a child still enables.
        find "$HUGETLB_V2" -name cgroup.subtree_control -printf '%d %p\n' | sort -rn | while read -r _ f; do
            if grep -qw hugetlb "$f"; then
                echo -hugetlb >"$f" && echo "subtree $f" >>"$state"
            fi
        done
    fi
    mkdir -p "$HUGETLB_V1"
    # The cgroup2 side releases the controller asynchronously: EBUSY for a moment.
    if ! wait_for mount -t cgroup -o hugetlb cgroup "$HUGETLB_V1" 2>/dev/null; then
        echo "$0: cannot mount hugetlb at $HUGETLB_V1 (still in use by cgroup2?)" >&2
        bench_unmount_hugetlb "$state"
        return 1
    fi
    echo "mounted $HUGETLB_V1" >>"$state"
    echo "   (mounted hugetlb as cgroup v1 at $HUGETLB_V1 for crun; undone at exit)"
}

# bench_unmount_hugetlb STATEFILE: undoes bench_mount_hugetlb, leaving hugetlb on cgroup2
# enabled where it was. Fails (and changes nothing) while other containers use the v1
# hierarchy.
bench_unmount_hugetlb() {
    local state=$1 try
    if grep -q '^mounted ' "$state" 2>/dev/null; then
        local left
        left=$(find "$HUGETLB_V1" -mindepth 2 -type d 2>/dev/null)
        if [ -n "$left" ]; then
            # Containers created while it was mounted (not ours: ours are gone) still use it.
            echo "$0: not unmounting $HUGETLB_V1: containers started meanwhile still use it:" >&2
            echo "$left" | sed 's/^/    /' >&2
            echo "    run bench/hugetlb-v1 unmount once they are deleted" >&2
            return 1
        fi
        for try in 1 2 3; do
            # Cgroups the runtimes left (berth keeps its parent "berth"), deepest first.
            find "$HUGETLB_V1" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
            # Unmounting while a removed cgroup is still dying leaves the hierarchy alive
            # but unmounted, holding the controller: wait until only the root is left.
            wait_for hugetlb_v1_empty || true
            umount "$HUGETLB_V1" || true
            wait_for hugetlb_on_v2 && break
            # It lingers: mount it again (that reuses it) and retry.
            mount -t cgroup -o hugetlb cgroup "$HUGETLB_V1" || true
        done
        if ! hugetlb_on_v2; then
            echo "$0: hugetlb did not return to cgroup2; see /proc/cgroups" >&2
            return 1
        fi
    fi
    # Re-enable hugetlb where it was enabled, parents first.
    grep '^subtree ' "$state" 2>/dev/null | cut -d' ' -f2- | tac | while read -r f; do
        echo +hugetlb >"$f" 2>/dev/null || echo "$0: could not re-enable hugetlb in $f" >&2
    done
    : >"$state"
}
