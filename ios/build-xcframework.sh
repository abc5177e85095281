#!/usr/bin/env bash
# Builds ios/LfmEdgeFFI.xcframework: liblfm_edge_ffi.a for iPhone (aarch64-apple-ios)
# and for the simulator (aarch64-apple-ios-sim and x86_64-apple-ios in one fat
# library), each with lfm_edge.h and the module map that Swift imports as LfmEdgeFFI.
# The JNI entry points are left out (--no-default-features).
#
# Needs macOS with Xcode (xcodebuild, lipo), and:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
for target in "${targets[@]}"; do
    cargo build --release --no-default-features -p lfm-edge-ffi --target "$target"
done

build=ios/build
rm -rf "$build" ios/LfmEdgeFFI.xcframework
mkdir -p "$build/headers" "$build/simulator"
cp ffi/include/lfm_edge.h ios/Apple/module.modulemap "$build/headers/"
lipo -create \
    target/aarch64-apple-ios-sim/release/liblfm_edge_ffi.a \
    target/x86_64-apple-ios/release/liblfm_edge_ffi.a \
    -output "$build/simulator/liblfm_edge_ffi.a"
xcodebuild -create-xcframework \
    -library target/aarch64-apple-ios/release/liblfm_edge_ffi.a -headers "$build/headers" \
    -library "$build/simulator/liblfm_edge_ffi.a" -headers "$build/headers" \
    -output ios/LfmEdgeFFI.xcframework
echo "built ios/LfmEdgeFFI.xcframework"
