# Shared shell functions of scripts/* and bench/* (sourced, not run).

# Fails unless running as root: berth creates namespaces, mounts and cgroups.
require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$0: must run as root (berth creates namespaces, mounts and cgroups); try: sudo $0" >&2
        exit 1
    fi
}

# Installs the given Debian packages that are not installed yet (idempotent: no apt-get call
# at all when everything is there).
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Fails with a clear message unless cargo (and, with "lint", rustfmt and clippy) exist.
require_rust() {
    if ! command -v cargo >/dev/null; then
        echo "$0: cargo not found: install the Rust toolchain (https://rustup.rs), then rerun" >&2
        exit 1
    fi
    if [ "${1:-}" = lint ]; then
        for c in fmt clippy; do
            if ! cargo "$c" --version >/dev/null 2>&1; then
                echo "$0: cargo $c not found: rustup component add ${c/fmt/rustfmt}" >&2
                exit 1
            fi
        done
    fi
}

# Parallel build jobs: the number of CPUs, at most 2 by default (the development machines
# are small and shared); override with BERTH_JOBS.
build_jobs() {
    echo "${BERTH_JOBS:-$(n=$(nproc); [ "$n" -gt 2 ] && echo 2 || echo "$n")}"
}

# build_busybox_rootfs DIR: a minimal rootfs from the host's static busybox (busybox-static):
# bin/busybox, one symlink per applet, /etc/passwd and /etc/group.
build_busybox_rootfs() {
    local dir=$1 bb=${BUSYBOX:-/bin/busybox}
    if [ ! -x "$bb" ]; then
        echo "$0: $bb not found: install busybox-static" >&2
        return 1
    fi
    mkdir -p "$dir"/bin "$dir"/etc "$dir"/proc "$dir"/sys "$dir"/dev "$dir"/tmp "$dir"/root
    chmod 1777 "$dir/tmp"
    cp "$bb" "$dir/bin/busybox"
    local applet
    for applet in $("$bb" --list); do
        # The list names busybox itself; a symlink there would replace the binary.
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
}

# make_bundle BERTH DIR ARGS_JSON: an OCI bundle in DIR with a busybox rootfs and runc's
# default config.json (written by `berth spec`), without a terminal, running ARGS_JSON
# (e.g. '["/bin/true"]'). Needs jq.
make_bundle() {
    local berth=$1 dir=$2 args=$3
    mkdir -p "$dir"
    build_busybox_rootfs "$dir/rootfs"
    rm -f "$dir/config.json"
    "$berth" spec --bundle "$dir"
    jq --argjson args "$args" '.process.terminal = false | .process.args = $args' "$dir/config.json" >"$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}

# The packages VM isolation (docs/vm-isolation.md) runs on: QEMU (qemu-system-x86), virtiofsd
# (qemu-system-common), and what scripts/vm-image builds the guest's initramfs with.
VM_PACKAGES="qemu-system-x86 qemu-system-common busybox-static cpio binutils"

# build_vm_image PROFILE: builds berth-vm-agent (cargo profile dev or release) and the guest
# image in target/vm from it (idempotent: kernel downloaded once, initramfs rebuilt when the
# agent changed).
build_vm_image() {
    local profile=$1 dir=debug
    [ "$profile" = release ] && dir=release
    cargo build -q -j "$(build_jobs)" --profile "$profile" -p berth-vm-agent
    scripts/vm-image target/vm "target/$dir/berth-vm-agent"
}
