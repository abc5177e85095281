#!/usr/bin/env bash
# Builds liblfm_edge_ffi.so (the C ABI and the JNI entry points) for the Android ABIs
# into lfm/build/rustJniLibs/<abi>/, which the Gradle module packages as jniLibs.
#
# Needs: the Android NDK (ANDROID_NDK_HOME, or ANDROID_HOME with an ndk/ folder),
#   cargo install cargo-ndk
#   rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
set -euo pipefail
cd "$(dirname "$0")/.."

cargo ndk --platform 26 \
    -t arm64-v8a -t armeabi-v7a -t x86_64 \
    -o android/lfm/build/rustJniLibs \
    build --release -p lfm-edge-ffi
