#!/usr/bin/env bash
# Population scoring on a GPU, in one short run (figures in results/scoring-speed.md):
#   1. the statistics of N OoD-ViT-NAS Tiny archs computed on the GPU (`autoprox stats --device cuda
#      --pass features`), seconds per arch;
#   2. `bench_population.py` on them: the batched evaluator on the GPU against the per-layer reference
#      (CPU), evaluations/s, bytes per evaluation against the GPU's bandwidth.
# Usage: bash benchmarks/gpu_population.sh TINY_JSON [N] [OUTDIR]   (autoprox importable; torch with CUDA)
set -u
bench=${1:?usage: gpu_population.sh TINY_JSON [N] [OUTDIR]}
n=${2:-300}
out=${3:-gpu-population}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
t0=$SECONDS
timeout 420 python3 -m autoprox.cli.main stats --space autoformer-tiny --bench "$bench" --limit "$n" \
    --pass features --device cuda 2>&1 | tail -2
echo "stats_cuda archs=$n wall_s=$((SECONDS - t0))" | tee -a "$out/times.txt"
for pop in 64 256; do
    timeout 300 python3 benchmarks/bench_population.py --space autoformer-tiny --bench "$bench" --archs "$n" \
        --population "$pop" --device cuda --stats-device cuda --threads 4 2>&1 | tee "$out/population_$pop.txt"
done
