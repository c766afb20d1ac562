# Shared functions of the bench/ scripts (sourced, after scripts/lib.sh).
#
# Scripts set BENCH_SELF=$(readlink -f "$0") before they cd (they re-execute themselves).
#
# Every comparison writes its data into its own directory OUT (bench/run gives each one
# $BENCH_OUT/<name>; run alone, a script uses a temporary one and prints its table):
#   title               one line: what is compared
#   commands.tsv        label <TAB> exact command, one line per runtime/supervisor
#   round*.json         hyperfine exports, one --command-name (= label) per runtime
#   perf-LABEL.csv      `perf stat -x,` output (task-clock, context-switches, page-faults)
#   rss-LABEL.txt       peak RSS in KiB (`/usr/bin/time -f %M`), one line per run
#   summary.tsv         label median p90 min n cpu_ms ctx_switches page_faults rss_kib
#   notes.md            optional: markdown the report prints under the table
# bench/report turns these into docs/benchmarks.md and docs/bench/*.png.

# Iteration counts; --smoke (BENCH_SMOKE=1) shrinks them to a few runs each, to check that
# every comparison still works (not to measure).
bench_defaults() {
    if [ "${BENCH_SMOKE:-0}" = 1 ]; then
        ROUNDS=${ROUNDS:-1} RUNS=${RUNS:-3} WARMUP=${WARMUP:-1} PERF_RUNS=${PERF_RUNS:-3} RSS_RUNS=${RSS_RUNS:-2}
    else
        ROUNDS=${ROUNDS:-5} RUNS=${RUNS:-40} WARMUP=${WARMUP:-10} PERF_RUNS=${PERF_RUNS:-100} RSS_RUNS=${RSS_RUNS:-10}
    fi
    BERTH_BUILT=${BERTH_BUILT:-$PWD/target/release/berth}
}

# Failure with a message, from any bench script.
bench_die() {
    echo "$0: $*" >&2
    exit 1
}

# bench_skip REASON: this comparison cannot run here (a tool or a component is missing):
# says so, records it for the report and exits with 3, which bench/run takes as "skipped".
bench_skip() {
    echo "$0: skipped: $*" >&2
    [ -n "${OUT:-}" ] && [ -d "$OUT" ] && echo "$*" >"$OUT/skipped"
    exit 3
}

# ---- process setup ---------------------------------------------------------------------

# bench_exit_hook CMD: runs CMD (eval'd) at exit, hooks in reverse order of registration.
# One EXIT trap for everything, so that the hugetlb undo, the unsealing of the berth copy
# and the removal of the work directory all happen whatever fails.
BENCH_EXIT_HOOKS=()
bench_exit_hook() {
    BENCH_EXIT_HOOKS+=("$1")
    trap bench_run_exit_hooks EXIT
}
bench_run_exit_hooks() {
    local i
    for ((i = ${#BENCH_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${BENCH_EXIT_HOOKS[i]}" || true
    done
    BENCH_EXIT_HOOKS=()
}

# bench_reexec_as_subreaper "$@": re-executes the calling script as a child subreaper. A
# detached container's init (create/start, run -d, the shims' containers) is re-parented to
# the nearest subreaper, else to PID 1, which on some machines (the development VM) never
# reaps: thousands of create/start/delete cycles would leave thousands of zombies and run
# out of pids. bash reaps any child it is given, and the attribute survives execve.
bench_reexec_as_subreaper() {
    [ "${BENCH_SUBREAPER:-}" = "$$" ] && return 0
    export BENCH_SUBREAPER=$$ # exec keeps the pid
    # prctl(PR_SET_CHILD_SUBREAPER = 36, 1) is syscall 157 on x86_64 and 167 on aarch64.
    local nr
    case $(uname -m) in
        x86_64) nr=157 ;;
        aarch64) nr=167 ;;
        *) echo "$0: warning: cannot become a subreaper on $(uname -m); orphans go to PID 1" >&2; return 0 ;;
    esac
    exec perl -e 'syscall('"$nr"', 36, 1, 0, 0, 0) == 0 or die "PR_SET_CHILD_SUBREAPER: $!\n"; exec @ARGV or die "exec: $!\n"' \
        -- "${BENCH_SELF:-$0}" "$@"
}

# ---- cgroups and crun --------------------------------------------------------------------

# The host's cgroup layout: unified (cgroup2 only), legacy (v1 only), hybrid (v1 plus an
# empty cgroup2), or hybrid-busy (v1 plus a cgroup2 that offers controllers, which crun
# refuses: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
bench_cgroup_layout() {
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
        echo unified
    elif ! mountpoint -q /sys/fs/cgroup/unified; then
        echo legacy
    elif [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
        echo hybrid-busy
    else
        echo hybrid
    fi
}

# bench_crun_workaround "$@": makes crun usable on a hybrid host whose cgroup2 offers a
# controller, for every runtime alike, and exports BENCH_CGROUP_WORKAROUND:
#   none         crun works as is
#   hugetlb-v1   hugetlb (cgroup2's only controller) moved to a v1 hierarchy, undone at exit
#                (see bench_mount_hugetlb)
#   legacy-view  the script re-executed itself in a private mount namespace whose
#                /sys/fs/cgroup shows only the v1 hierarchies: every runtime then sees a
#                legacy host. The fallback when the move fails, e.g. while a dying cgroup2
#                child pins hugetlb (EBUSY until reboot).
# BENCH_CGROUP_WORKAROUND=legacy-view in the environment forces the fallback. A script
# started by bench/run inherits the decision (and the namespace).
bench_crun_workaround() {
    case ${BENCH_CGROUP_WORKAROUND:-} in
        legacy-view)
            mountpoint -q /sys/fs/cgroup/unified || return 0
            # Only ever inside the namespace made for it: never cover the host's cgroups.
            if [ -n "${BENCH_HOST_MNTNS:-}" ] && [ "$(readlink /proc/self/ns/mnt)" != "$BENCH_HOST_MNTNS" ]; then
                bench_enter_legacy_view
                return 0
            fi
            BENCH_HOST_MNTNS=$(readlink /proc/self/ns/mnt)
            export BENCH_HOST_MNTNS BENCH_CGROUP_REASON=${BENCH_CGROUP_REASON:-forced by BENCH_CGROUP_WORKAROUND=legacy-view}
            exec unshare --mount --propagation private -- "${BENCH_SELF:-$0}" "$@"
            ;;
        none | hugetlb-v1) return 0 ;;
        "") ;;
        *) bench_die "unknown BENCH_CGROUP_WORKAROUND=$BENCH_CGROUP_WORKAROUND (none, legacy-view)" ;;
    esac
    export BENCH_CGROUP_WORKAROUND=none
    [ "$(bench_cgroup_layout)" = hybrid-busy ] || return 0
    if [ "$(cat /sys/fs/cgroup/unified/cgroup.controllers)" = hugetlb ]; then
        echo "   crun refuses this hybrid host while cgroup2 offers hugetlb: moving hugetlb to cgroup v1"
        if bench_mount_hugetlb /run/berth-bench-hugetlb.state.new; then
            cat /run/berth-bench-hugetlb.state.new >>/run/berth-bench-hugetlb.state
            rm -f /run/berth-bench-hugetlb.state.new
            export BENCH_CGROUP_WORKAROUND=hugetlb-v1
            bench_exit_hook 'bench_unmount_hugetlb /run/berth-bench-hugetlb.state && rm -f /run/berth-bench-hugetlb.state'
            return 0
        fi
        rm -f /run/berth-bench-hugetlb.state.new
    fi
    echo "   crun refuses this hybrid host and cgroup2's controllers cannot be moved: using a legacy view"
    export BENCH_CGROUP_WORKAROUND=legacy-view BENCH_CGROUP_REASON="cgroup2's controllers could not be moved to v1"
    bench_crun_workaround "$@"
}

# In the private mount namespace of bench_crun_workaround: a fresh tmpfs on /sys/fs/cgroup
# holding the same v1 hierarchies, without cgroup2. The hierarchies are the host's (same
# cgroups, same limits); only this namespace's view changes.
bench_enter_legacy_view() {
    local aside n
    aside=$(mktemp -d /tmp/berth-bench-v1view.XXXXXX)
    for n in $(awk '$5 ~ "^/sys/fs/cgroup/[^/]+$" && $0 ~ / - cgroup / { sub("/sys/fs/cgroup/", "", $5); print $5 }' /proc/self/mountinfo); do
        mkdir "$aside/$n"
        mount --bind "/sys/fs/cgroup/$n" "$aside/$n"
    done
    # Unmounted, not covered: runtimes read /proc/self/mountinfo, where a covered cgroup2
    # would still show.
    umount -R /sys/fs/cgroup
    mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup /sys/fs/cgroup
    for n in $(ls "$aside"); do
        mkdir "/sys/fs/cgroup/$n"
        mount --move "$aside/$n" "/sys/fs/cgroup/$n"
        rmdir "$aside/$n"
    done
    rmdir "$aside"
    [ "$(bench_cgroup_layout)" = legacy ] || bench_die "the legacy view failed: $(bench_cgroup_layout)"
}

# A sentence for the report.
bench_describe_workaround() {
    case ${BENCH_CGROUP_WORKAROUND:-none} in
        none) echo "none needed (crun accepts this cgroup layout)" ;;
        hugetlb-v1) echo "hugetlb moved from cgroup2 to a v1 hierarchy for the run (bench/hugetlb-v1), undone at exit" ;;
        legacy-view) echo "legacy view: every runtime ran in a private mount namespace whose /sys/fs/cgroup holds only the v1 hierarchies (${BENCH_CGROUP_REASON:-chosen})" ;;
    esac
}

# ---- tools and binaries ------------------------------------------------------------------

bench_require_tools() {
    local missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        bench_die "missing: ${missing[*]} (Debian packages: runc crun hyperfine linux-perf jq time gnuplot-nox containerd; scripts/setup installs them)"
    fi
    # perf may be installed for another kernel than the running one.
    if [[ " $* " == *" perf "* ]] && ! perf stat -e task-clock -x, -o /dev/null -- true 2>/dev/null; then
        bench_die "'perf stat' does not work here: $(perf stat -e task-clock -- true 2>&1 | head -2)"
    fi
}

# bench_berth_binaries WORK: BERTH_BUILT must exist; BERTH becomes an immutable copy of it
# in WORK/sealed (`chattr +i`) unless the caller (bench/run) made one already; empty if the
# file system has no immutable attribute. berth re-executes itself from a read-only mount
# before create, run and exec when its binary is writable (crates/berth-linux/src/seal.rs);
# an installed berth is immutable, so the tables use the copy and show the writable build
# as berth-rw.
bench_berth_binaries() {
    [ -x "$BERTH_BUILT" ] || bench_die "$BERTH_BUILT not found: run scripts/setup (or cargo build --release -p berth-cli)"
    if [ -z "${BERTH+set}" ]; then
        BERTH=$1/sealed/berth
        mkdir -p "$1/sealed"
        cp "$BERTH_BUILT" "$BERTH"
        if chattr +i "$BERTH" 2>/dev/null; then
            bench_exit_hook "chattr -i '$BERTH'"
        else
            echo "   (no immutable attribute on $1: berth runs only from the writable build)" >&2
            BERTH=
        fi
    fi
    export BERTH BERTH_BUILT
}

# bench_runtimes WORK: the runtimes of the CLI comparisons, from RUNTIMES (default: berth
# berth-rw runc crun) minus those that are not installed (said, not fatal), into the array
# `runtimes`, and rt[LABEL], each runtime's command with its own state root:
#   berth     the immutable copy (as installed), berth-rw the writable build (one re-exec).
declare -A rt
bench_runtimes() {
    local work=$1 r
    rt=([berth-rw]="$BERTH_BUILT --root $work/root-berth-rw" [runc]="runc --root $work/root-runc"
        [crun]="crun --root $work/root-crun")
    if [ -n "$BERTH" ]; then rt[berth]="$BERTH --root $work/root-berth"; fi
    runtimes=()
    for r in ${RUNTIMES:-berth berth-rw runc crun}; do
        if [ -z "${rt[$r]:-}" ]; then
            echo "   skipping $r: not available (unknown label, or no immutable copy of berth)" >&2
        elif [[ $r != berth* ]] && ! command -v "$r" >/dev/null; then
            echo "   skipping $r: not installed" >&2
        else
            runtimes+=("$r")
        fi
    done
}

# True if the array `runtimes` holds crun.
bench_has_crun() { [[ " ${runtimes[*]} " == *" crun "* ]]; }

# bench_init "$@": the common start of a comparison script: the flags (--smoke, --help:
# the script's header comment), root, re-execution as a subreaper and for crun, the tools,
# the work directory `work` (removed at exit) and `tag` (unique to it, for container ids), the
# berth binaries, the CLI runtimes and the output directory `out` (OUT, or work/out).
bench_init() {
    local a
    for a in "$@"; do
        case $a in
            --smoke) export BENCH_SMOKE=1 ;;
            -h | --help) sed -n '2,/^BENCH_SELF=/p' "$BENCH_SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) echo "$0: unknown argument $a" >&2; exit 2 ;;
        esac
    done
    require_root
    bench_reexec_as_subreaper "$@"
    bench_defaults
    bench_require_tools hyperfine perf jq /usr/bin/time
    if command -v crun >/dev/null; then bench_crun_workaround "$@"; fi
    work=$(mktemp -d /tmp/berth-bench.XXXXXX)
    bench_exit_hook "rm -rf '$work'"
    # In container ids: the default cgroup path is berth/<id> whatever --root says, so ids
    # must not collide with anyone else's containers (or another bench run's).
    tag=${work##*.}
    bench_berth_binaries "$work"
    bench_runtimes "$work"
    out=${OUT:-$work/out}
    mkdir -p "$out"
}

# ---- measuring ---------------------------------------------------------------------------

bench_header() {
    echo "== $1"
    echo "   $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), cgroup workaround: ${BENCH_CGROUP_WORKAROUND:-none}"
}

# bench_commands OUT LABEL...: records in OUT/commands.tsv what each label runs: shown[LABEL]
# if set (e.g. a script's content), else cmd[LABEL]. cmd and shown are the caller's
# associative arrays.
declare -A cmd shown
bench_commands() {
    local out=$1 l
    shift
    for l in "$@"; do
        printf '%s\t%s\n' "$l" "${shown[$l]:-${cmd[$l]}}"
    done >"$out/commands.tsv"
}

# bench_hyperfine OUT LABEL...: ROUNDS rounds of hyperfine -N over cmd[LABEL], RUNS runs
# each after WARMUP warm-up runs, the order of the labels rotated each round so that drift
# in machine load is spread over all of them.
bench_hyperfine() {
    local out=$1 round
    shift
    for ((round = 0; round < ROUNDS; round++)); do
        echo "   round $((round + 1))/$ROUNDS: $RUNS runs each, $WARMUP warm-up"
        bench_hyperfine_round "$out" "$round" "$@"
    done
}

# bench_hyperfine_round OUT ROUND LABEL...: one round, into OUT/roundROUND.json.
bench_hyperfine_round() {
    local out=$1 round=$2 i l
    shift 2
    local labels=("$@") args=()
    for ((i = 0; i < ${#labels[@]}; i++)); do
        l=${labels[(i + round) % ${#labels[@]}]}
        args+=(--command-name "$l" "${cmd[$l]}")
    done
    # (stderr kept aside: hyperfine warns about outliers on a busy machine)
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$out/round$round.json" \
        "${args[@]}" >/dev/null 2>"$out/hyperfine.err" || { cat "$out/hyperfine.err" >&2; return 1; }
}

# bench_perf OUT LABEL...: `perf stat -r PERF_RUNS` of each cmd[LABEL]: CPU time
# (task-clock), context switches and page faults of the command and every process it starts
# (perf follows children), means over the runs.
bench_perf() {
    local out=$1 l
    shift
    for l in "$@"; do
        echo "   perf stat: $l ($PERF_RUNS runs)"
        # shellcheck disable=SC2086 # commands are word lists without quoting
        perf stat -x, -e task-clock,context-switches,page-faults -r "$PERF_RUNS" -o "$out/perf-$l.csv" \
            -- ${cmd[$l]} </dev/null >/dev/null
    done
}

# bench_rss OUT LABEL...: peak RSS of each cmd[LABEL], RSS_RUNS times. GNU time reports the
# largest single process the command waited for (ru_maxrss of the children), not a sum.
bench_rss() {
    local out=$1 l i
    shift
    for l in "$@"; do
        : >"$out/rss-$l.txt"
        for ((i = 0; i < RSS_RUNS; i++)); do
            # shellcheck disable=SC2086
            /usr/bin/time -q -f %M -a -o "$out/rss-$l.txt" -- ${cmd[$l]} </dev/null >/dev/null
        done
    done
}

# bench_compare OUT LABEL...: all three measurements, then the summary and the table.
bench_compare() {
    local out=$1
    shift
    bench_commands "$out" "$@"
    bench_hyperfine "$out" "$@"
    bench_perf "$out" "$@"
    bench_rss "$out" "$@"
    bench_summarize "$out" "$@"
    bench_table "$out"
}

# Wall-time statistics of one label over every round, in ms: "median p90 min n".
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

# perf stat means of one label: "task-clock-ms context-switches page-faults" ("- - -"
# without a perf file).
bench_perf_means() {
    [ -s "$1/perf-$2.csv" ] || { echo "- - -"; return; }
    awk -F, '
        $3 == "task-clock" { t = $1 }
        $3 == "context-switches" { c = $1 }
        $3 == "page-faults" { p = $1 }
        END { printf "%.2f %.1f %.0f\n", t, c, p }
    ' "$1/perf-$2.csv"
}

# Median peak RSS of one label in KiB ("-" without data).
bench_rss_median() {
    [ -s "$1/rss-$2.txt" ] || { echo -; return; }
    grep -E '^[0-9]+$' "$1/rss-$2.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}

# bench_summarize OUT LABEL...: OUT/summary.tsv, one line per label.
bench_summarize() {
    local out=$1 l med p90 min n cpu ctx pf
    shift
    for l in "$@"; do
        read -r med p90 min n <<<"$(bench_wall "$out" "$l")"
        read -r cpu ctx pf <<<"$(bench_perf_means "$out" "$l")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$l" "$med" "$p90" "$min" "$n" "$cpu" "$ctx" "$pf" "$(bench_rss_median "$out" "$l")"
    done >"$out/summary.tsv"
}

# bench_table OUT: the summary as a text table, and the ratios of berth to the others.
bench_table() {
    local out=$1
    echo
    awk -F'\t' '
        BEGIN { printf "%-16s %9s %9s %9s %9s %13s %12s %13s\n", "", "median ms", "p90 ms", "min ms", "CPU ms", "ctx switches", "page faults", "peak RSS KiB" }
        { printf "%-16s %9s %9s %9s %9s %13s %12s %13s\n", $1, $2, $3, $4, $6, $7, $8, $9; n = $5 }
        END { printf "(wall: %s runs each over all rounds; CPU ms = perf task-clock, mean; peak RSS = largest single process, median)\n", n }
    ' "$out/summary.tsv"
    bench_ratios "$out"
}

# The ratios berth/X of median wall and CPU time, for the berth labels against the others.
bench_ratios() {
    awk -F'\t' '
        { label[NR] = $1; med[$1] = $2; cpu[$1] = $6 }
        END {
            for (i = 1; i <= NR; i++) for (j = 1; j <= NR; j++) {
                a = label[i]; b = label[j]
                if (a !~ /berth/ || b ~ /berth/ || med[b] + 0 == 0) continue
                line = sprintf("%s/%s: median wall %.2fx", a, b, med[a] / med[b])
                if (cpu[b] + 0 > 0 && cpu[a] != "-") line = line sprintf(", CPU %.2fx", cpu[a] / cpu[b])
                print line
            }
        }
    ' "$1/summary.tsv"
}

# ---- containerd ----------------------------------------------------------------------------

# bench_shim_binary: the path of berth's containerd shim (containerd-shim-berth-v2), from SHIM
# or target/release; empty if not built.
bench_shim_binary() {
    local s=${SHIM:-$PWD/target/release/containerd-shim-berth-v2}
    if [ -x "$s" ]; then echo "$s"; fi
}

# bench_remove_cgroup_parent NAME: removes /NAME (and the empty cgroups below it) in every
# mounted cgroup hierarchy: ctr's cgroups path is /<namespace>/<id>, and the runtimes remove
# only the containers' directories.
bench_remove_cgroup_parent() {
    local name=$1 mp
    for mp in $(awk '$0 ~ / - cgroup2? / {print $5}' /proc/self/mountinfo); do
        [ -d "$mp/$name" ] && find "$mp/$name" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}

# bench_containerd DIR SHIM: starts a private containerd in DIR (its own root, state and
# socket, the CRI plugin off) that finds SHIM (if given) as runtime io.containerd.berth.v2,
# stopped at exit. Sets CTD_SOCK, CTD_PID and ctr_cmd (ctr on that socket, namespace bench).
bench_containerd() {
    local dir=$1 shim=${2:-} i
    mkdir -p "$dir/bin"
    # containerd resolves io.containerd.berth.v2 as containerd-shim-berth-v2 on its PATH.
    if [ -n "$shim" ]; then ln -sf "$shim" "$dir/bin/containerd-shim-berth-v2"; fi
    CTD_SOCK=$dir/containerd.sock
    cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
TOML
    PATH=$dir/bin:$PATH containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
    CTD_PID=$!
    bench_exit_hook "kill $CTD_PID 2>/dev/null; wait $CTD_PID 2>/dev/null; bench_remove_cgroup_parent bench"
    ctr_cmd="ctr -a $CTD_SOCK -n bench"
    for i in $(seq 100); do
        $ctr_cmd version >/dev/null 2>&1 && return 0
        kill -0 "$CTD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$dir/containerd.log" >&2
    bench_die "containerd did not start (log: $dir/containerd.log)"
}

# The pids of the shims serving the private containerd (their command line names its socket).
bench_shim_pids() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q "containerd-shim.* $CTD_SOCK" && { f=${f#/proc/}; echo "${f%/cmdline}"; }
    done
    return 0
}

# bench_proc_sum PID...: "PSS Private_Dirty RSS Threads" summed over the processes, KiB
# (smaps_rollup; a process that is gone counts nothing).
bench_proc_sum() {
    local p
    for p in "$@"; do
        cat "/proc/$p/smaps_rollup" "/proc/$p/status" 2>/dev/null
    done | awk '
        $1 == "Pss:" { pss += $2 } $1 == "Private_Dirty:" { pd += $2 } $1 == "Rss:" { rss += $2 }
        $1 == "Threads:" { th += $2 }
        END { printf "%d %d %d %d\n", pss, pd, rss, th }'
}

# ---- crun on hybrid hosts: moving hugetlb (see bench/hugetlb-v1) --------------------------

bench_explain_crun_hybrid() {
    case $1 in
        *hybrid*)
            cat >&2 <<'MSG'
crun refuses hybrid cgroup hosts while cgroup2 offers a controller (here: hugetlb).
bench/run works around it by itself (bench/README.md, "crun and hybrid cgroups").
MSG
            ;;
    esac
}

# hugetlb as a cgroup v1 hierarchy, for crun on a hybrid host.
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
