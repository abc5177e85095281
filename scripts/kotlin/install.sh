#!/usr/bin/env bash
# Installs the Kotlin compiler (kotlinc, with kotlinx-coroutines-core-jvm.jar in its lib/)
# from npm's `kotlin-compiler` package into a cache outside the repository, for
# ffi/tests/kotlin.rs, and prints the path of kotlinc. Does nothing when it is there.
#
#   scripts/kotlin/install.sh           install if missing, print the path of kotlinc
#   scripts/kotlin/install.sh --check   print the path, or fail if it is not installed
#
# LFM_KOTLIN_HOME: the cache (default ~/.cache/lfm-edge/kotlin); each version has a
# folder of its own there.
set -euo pipefail

VERSION=2.4.20
home="${LFM_KOTLIN_HOME:-$HOME/.cache/lfm-edge/kotlin}"
dist="$home/$VERSION"
kotlinc="$dist/bin/kotlinc"

installed() {
    [ -x "$kotlinc" ] && [ -f "$dist/lib/kotlinx-coroutines-core-jvm.jar" ] \
        && [ -f "$dist/lib/kotlin-stdlib.jar" ]
}

if installed; then
    echo "$kotlinc"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "the Kotlin compiler $VERSION is not in $dist: run scripts/kotlin/install.sh" >&2
    exit 1
fi

command -v npm >/dev/null || { echo "npm is needed to install the Kotlin compiler" >&2; exit 1; }
mkdir -p "$home"
# Installed beside the cache, then moved into place whole: an interrupted install
# leaves no half-filled version folder.
staging="$(mktemp -d "$home/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
npm install --prefix "$staging" --no-save --no-package-lock --no-audit --no-fund \
    --loglevel=error "kotlin-compiler@$VERSION" >&2
package="$staging/node_modules/kotlin-compiler"
[ "$(cat "$package/build.txt")" = "$VERSION" ] \
    || { echo "npm gave kotlin-compiler $(cat "$package/build.txt"), not $VERSION" >&2; exit 1; }
rm -rf "$dist"
mv "$package" "$dist"
installed || { echo "$dist lacks bin/kotlinc or the jars of lib/" >&2; exit 1; }
echo "$kotlinc"
