#!/usr/bin/env bash
# Creates a Debian trixie root with Swift (swiftlang) and Mesa's lavapipe, in which
# ffi/tests/swift.rs builds and tests the Swift package in ios/ (the host's glibc is
# too old for Swift). Idempotent: a complete root (its stamp matches) is left as it is.
#
#   scripts/swift/root.sh          # root at ${LFM_SWIFT_ROOT:-$HOME/.cache/lfm-edge/swift-trixie}
#
# Needs root (or sudo) and Debian's mirror. From scratch: about 2 minutes, 3 GB.
set -euo pipefail

root="${LFM_SWIFT_ROOT:-$HOME/.cache/lfm-edge/swift-trixie}"
mirror="${LFM_SWIFT_MIRROR:-http://deb.debian.org/debian}"
suite=trixie
# What the root holds besides minbase: Swift and its linker, and a Vulkan device for wgpu.
# swiftlang brings gcc and binutils; linking Swift wants the C and C++ libraries' dev files.
packages=(swiftlang libc6-dev libstdc++-14-dev mesa-vulkan-drivers libvulkan1)
# The stamp records what a complete root holds; change the list and the root is updated.
stamp="$root/.lfm-edge-swift-root"
want="suite=$suite packages=${packages[*]}"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Nothing mounted under the root may be deleted with it (ffi/tests/swift.rs mounts the
# repository only in a namespace of its own, but a mount made by hand could be there).
mounted_under() { findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1 || $0 == r'; }
if [ -n "$(mounted_under)" ]; then
    echo "root.sh: refusing to touch $root: something is mounted under it:" >&2
    mounted_under >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null; then
    as_root apt-get update -q
    as_root apt-get install -y -q debootstrap
fi

# debootstrap deletes $root/debootstrap when it succeeds: a root without apt, or with
# that folder left, was interrupted and is made again.
if [ ! -x "$root/usr/bin/apt-get" ] || [ -d "$root/debootstrap" ]; then
    as_root rm -rf --one-file-system "$root"
    mkdir -p "$(dirname "$root")"
    echo "root.sh: debootstrap $suite into $root"
    as_root debootstrap --variant=minbase "$suite" "$root" "$mirror"
fi

as_root cp /etc/resolv.conf "$root/etc/resolv.conf"
# Postinst scripts want /proc: mounted in a mount namespace of its own, so that it
# goes away with the install however that ends.
in_root() {
    as_root unshare --mount --propagation private -- /bin/sh -c \
        'mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive "$@"' \
        "$root" "$@"
}
in_root apt-get update -q
in_root apt-get install -y -q --no-install-recommends "${packages[@]}"
in_root apt-get clean

in_root swift --version
echo "$want" | as_root tee "$stamp" >/dev/null
echo "root.sh: $root is ready"
