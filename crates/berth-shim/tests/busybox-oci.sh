#!/bin/bash
# Builds a one-layer OCI image layout tarball from the host's static busybox, for tests and
# benchmarks that must not download anything: index.json, the manifest, the config and one
# layer (busybox plus its applet links), importable with `ctr images import` and `podman load`.
#
#   busybox-oci.sh OUT.tar [IMAGE_NAME]     (default name: docker.io/library/berth-busybox:latest)
set -euo pipefail
out=$1
name=${2:-docker.io/library/berth-busybox:latest}
bb=$(command -v busybox || true)
[ -n "$bb" ] || { echo "busybox-oci.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$bb" >/dev/null 2>&1; then
    echo "busybox-oci.sh: $bb is dynamically linked; a static busybox (busybox-static) is needed" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc" "$work/rootfs/proc" "$work/rootfs/sys" \
    "$work/rootfs/dev" "$work/layout/blobs/sha256"
cp "$bb" "$work/rootfs/bin/busybox"
for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
# Reproducible layer: fixed owner and times, sorted entries.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" .
blob() { # file -> digest (moves it into the blob store)
    local d
    d=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$work/layout/blobs/sha256/$d"
    echo "$d"
}
size() { stat -c %s "$work/layout/blobs/sha256/$1"; }
layer=$(blob "$work/layer.tar")
diffid=$layer
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diffid" > "$work/config.json"
config=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$(size "$config")" "$layer" "$(size "$layer")" > "$work/manifest.json"
manifest=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$(size "$manifest")" "$name" "${name##*:}" > "$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
tar --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out" oci-layout index.json blobs
