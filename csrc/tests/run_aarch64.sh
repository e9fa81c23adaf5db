#!/usr/bin/env bash
# Cross-compile the CPU attention kernel's standalone test (attention_test.cpp + ../attention.cpp) for aarch64
# (the NEON path, as on Jetson) and run it under qemu-user: correctness only, timings under emulation mean
# nothing. Needs Debian's g++-aarch64-linux-gnu and qemu-user; exits 77 (skip) when either is missing.
#   bash csrc/tests/run_aarch64.sh [BUILD_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cxx="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
qemu="${QEMU_AARCH64:-qemu-aarch64}"
for tool in "$cxx" "$qemu"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "skip: $tool not found (Debian: apt-get install g++-aarch64-linux-gnu qemu-user)"
    exit 77
  fi
done
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
# -static: qemu needs no aarch64 sysroot; OpenMP on, so the threaded driver loop runs too.
"$cxx" -std=c++17 -O3 -Wall -Wno-psabi -static -fopenmp -I"$here/.." \
  "$here/attention_test.cpp" "$here/../attention.cpp" -o "$out/attention_test_aarch64"
OMP_NUM_THREADS=2 "$qemu" "$out/attention_test_aarch64"
