#!/bin/sh
# Run the firmware's libFuzzer harness for longer than CI does, keeping the corpus between runs:
#   firmware_bridge/fuzz/run.sh [RUNS] [extra libFuzzer flags...]      (default 10,000,000 executions)
# Findings are written to firmware_bridge/fuzz/findings/ (crash-*, with the input that caused them); replay
# one with: build/fuzz_wwfw firmware_bridge/fuzz/findings/crash-...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-10000000}
[ $# -gt 0 ] && shift
out=${WALLWM_FUZZ_DIR:-$here/../../build/fuzz}
mkdir -p "$out/corpus" "$here/findings"
${CC:-clang} -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -ffp-contract=off \
  -I "$here/../include" "$here"/../src/*.c "$here/fuzz_wwfw.c" -lm -o "$out/fuzz_wwfw"
exec "$out/fuzz_wwfw" -runs="$runs" -max_len=2048 -print_final_stats=1 -artifact_prefix="$here/findings/" \
  "$out/corpus" "$@"
