#!/usr/bin/env bash
# One GPU session's work, as one script (the device machine allows one command at a time and
# 15 minutes in all): continue the toy generator's training, train the toy segmenter, then
# time the explain engine at SD1.5 scale with whatever time is left.
#
# Run from the repository root on the GPU machine with the wheels of docs/BENCHMARKS.md (typer's
# included: the training goes through `dxray zoo train`) in .wheels/ and OUT set to a folder
# that comes back; TOTAL_S is this script's wall budget.
# Every stage has its own timeout, so a failing stage costs its time and no more.
set -u
OUT=${OUT:?set OUT}
TOTAL_S=${TOTAL_S:-560}
GEN_S=${GEN_S:-220}
SEG_S=${SEG_S:-60}
t0=$(date +%s)
left() { echo $(( TOTAL_S - ($(date +%s) - t0) )); }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "${WHEELS:-.wheels}"/*.whl && echo wheels ok
} > "$OUT/setup.log" 2>&1
export PYTHONPATH=/tmp/site:$PWD

# 1. Generator: warm start from the committed export (copied where `dxray zoo train` keeps its
#    training state), UNet stage, CUDA graphs; the result is copied to /tmp/toy/generator.
mkdir -p /tmp/toy/.generator-training
cp -r dxray/toyworld/zoo/default/generator /tmp/toy/.generator-training/
timeout $((GEN_S + 90)) python3 -m dxray.cli zoo train --out /tmp/toy --parts generator \
  --device cuda --generator-seconds "$GEN_S" --generator-cuda-graphs > "$OUT/generator.log" 2>&1
echo "generator rc $? at $(( $(date +%s) - t0 )) s" >> "$OUT/setup.log"
tar -C /tmp/toy -cf - generator | split -b 15m - "$OUT/generator.tar."

# 2. Segmenter: from scratch, bf16 autocast, batch 128.
timeout $((SEG_S + 60)) python3 -m dxray.cli zoo train --out /tmp/seg --parts segmenter \
  --device cuda --segmenter-seconds "$SEG_S" --segmenter-steps 100000 > "$OUT/segmenter.log" 2>&1
echo "segmenter rc $? at $(( $(date +%s) - t0 )) s" >> "$OUT/setup.log"
[ -d /tmp/seg/segmenter ] && tar -C /tmp/seg -cf "$OUT/segmenter.tar" segmenter

# 3. Engine benchmark with the time that is left (model build included in its budget).
budget=$(( $(left) - 45 ))
if [ "$budget" -gt 60 ]; then
  timeout $((budget + 40)) python3 benchmarks/gpu_engine.py --json "$OUT/gpu_engine.json" \
    --budget-s "$budget" > "$OUT/bench.log" 2>&1
  echo "bench rc $? at $(( $(date +%s) - t0 )) s" >> "$OUT/setup.log"
else
  echo "no time left for the benchmark ($budget s)" >> "$OUT/setup.log"
fi
