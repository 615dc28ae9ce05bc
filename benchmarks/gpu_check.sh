#!/usr/bin/env bash
# The GPU path, measured in one short run on a CUDA machine (figures in results/gpu.md):
#   1. statistics (`autoprox stats --device cuda`) on 20 archs of each space: seconds per arch;
#   2. Ray actors sharing one GPU (`--workers 2 --gpus-per-worker 0.5`): the same statistics as
#      the serial path, checked by comparing the scores.csv of a bench read from each cache;
#   3. a 50-candidate serial search and a 1000-candidate search on 4 Ray actors x 0.25 GPU.
# Usage: bash benchmarks/gpu_check.sh OUTDIR   (autoprox importable; Ray and torch with CUDA)
set -u
out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d)
main='import sys; from autoprox.cli.main import main; sys.exit(main(sys.argv[1:]))'
timed() {  # timed NAME LIMIT_S ARGS...: run `autoprox ARGS`, keep wall time and peak RSS
    local name=$1 limit=$2; shift 2
    echo "== $name: autoprox $*"
    local t0=$SECONDS rc
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "$name peak_rss_kb=%M" -a -o "$out/times.txt" \
            timeout "$limit" python3 -c "$main" "$@"; rc=$?
    else
        timeout "$limit" python3 -c "$main" "$@"; rc=$?
    fi
    echo "$name rc=$rc wall_s=$((SECONDS - t0))" | tee -a "$out/times.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, ray; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "ray", ray.__version__)'

for space in pit autoformer; do
    timed "stats_cuda_$space" 90 stats --space "$space" --limit 20 --device cuda \
        --cache-dir "$tmp/serial"
done
timed stats_cuda_ray_pit 90 stats --space pit --limit 20 --device cuda \
    --backend ray --workers 2 --gpus-per-worker 0.5 --cache-dir "$tmp/ray"
for c in serial ray; do
    timed "bench_$c" 40 bench --space pit --limit 20 --proxy snip zico naswot grad_norm fisher params \
        --device cuda --cache-dir "$tmp/$c" --out "$tmp/bench_$c"
done
cp "$tmp/bench_serial/bench.csv" "$out/bench_cuda.csv"
if cmp -s "$tmp/bench_serial/scores.csv" "$tmp/bench_ray/scores.csv"; then
    echo "scores.csv: serial == ray (byte for byte)"
else
    echo "scores.csv: serial != ray"; diff "$tmp/bench_serial/scores.csv" "$tmp/bench_ray/scores.csv" | head -20
fi
timed search_cuda_serial_50 40 search --space autoformer --proxy snip --budget 50 --device cuda \
    --out "$tmp/search50"
timed search_cuda_ray4_1000 170 search --space autoformer --proxy snip --budget 1000 --chunk 64 \
    --device cuda --backend ray --workers 4 --gpus-per-worker 0.25 --out "$tmp/search1000"
cp "$tmp/search1000/result.yaml" "$out/search1000_result.yaml" 2>/dev/null
cat "$out/times.txt"
