#!/usr/bin/env bash
# Runs lookout and its Python reference in one script, alternately, so that both see the same machine
# (speeds on a shared machine swing by 3x between minutes: only figures taken side by side mean anything).
#
#   benches/side_by_side.sh extract [ROUNDS]   # extraction: host/benches/extract.rs vs benches/extract_reference.py
#   benches/side_by_side.sh train [ROUNDS]     # training:   host/benches/train.rs   vs benches/train_reference.py
#
# The Python side prints a SKIPPED line where onnxruntime / torch is missing. Shared data is found as the
# tests find it (LOOKOUT_TEST_DATA, else ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: benches/side_by_side.sh extract|train [ROUNDS]}
rounds=${2:-2}
case "$what" in
  extract) bench=extract; reference=(python3 benches/extract_reference.py) ;;
  train) bench=train; reference=(python3 benches/train_reference.py) ;;
  *) echo "unknown benchmark '$what': extract or train" >&2; exit 2 ;;
esac
cargo bench --locked -p lookout-host --bench "$bench" --no-run
for round in $(seq 1 "$rounds"); do
  echo "== round $round/$rounds: $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
  "${reference[@]}"
  cargo bench --locked -q -p lookout-host --bench "$bench"
done
