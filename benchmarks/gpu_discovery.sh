#!/usr/bin/env bash
# Discovery with the expensive leaves, on a CUDA machine, in one short run (figures in results/gpu.md):
#   1. every statistics pass (base, ZiCo, GraSP's Hessian, the logit Jacobian) of the 100 AutoFormer
#      archs on the GPU, through Ray actors sharing it;
#   2. `runs/c100_kd_hessian.yaml` and, on the same statistics, `runs/c100_kd.yaml` (the same run
#      without the two expensive leaves): 5 held-out folds and the final run each, one process per
#      fold, then gathered (`--cv 5 --resume`), so the two runs are compared fold by fold;
#   3. meanwhile, the GPU path again: serial and Ray statistics give byte-equal bench scores, and a
#      50-candidate search with --device cuda.
# Rerunning it in the same WORK folder resumes every stage (cache hits, `evolve --resume`).
# Measured on an H200 machine (results/gpu.md, 2026-11-30): stage 1 takes about 1 minute; the 12 folds need
# about 8 minutes, since evolution is CPU work and 12 processes on its 16 vCPUs run at half a free
# core's rate; so it needs two calls (or one DEADLINE_S near 700) and about 12 minutes in all.
# Usage: bash benchmarks/gpu_discovery.sh OUTDIR WORK [DEADLINE_S]   (autoprox, Ray and CUDA torch importable)
# SMOKE=1 DEVICE=cpu runs the same stages on 30 tiny-batch archs and one generation, on a CPU box.
set -u
out=${1:?usage: gpu_discovery.sh OUTDIR WORK [DEADLINE_S]}
work=${2:?usage: gpu_discovery.sh OUTDIR WORK [DEADLINE_S]}
deadline=${3:-560}
mkdir -p "$out" "$work/logs"
cache="$work/cache"
main='import sys; from autoprox.cli.main import main; sys.exit(main(sys.argv[1:]))'
left() { local s=$((deadline - SECONDS - ${1:-0})); echo $((s > 1 ? s : 1)); }
stamp() { echo "[$SECONDS s] $*" | tee -a "$out/times.txt"; }
ap=(python3 -c "$main")
dev=${DEVICE:-cuda}
gpu=(); [ "$dev" = cuda ] && gpu=(--gpus-per-worker 0.16)
small=(); evo=(--set "objective.scoring.device=$dev" --set "objective.scoring.cache_dir=$cache")
if [ -n "${SMOKE:-}" ]; then
    small=(--limit 30 --batch-size 4 --resolution 32)
    evo+=(--set objective.limit=30 --set objective.scoring.batch.size=4 --set objective.scoring.batch.resolution=32
          --set steps=1 --set population=6 --set offspring=6)
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, ray, deap; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "ray", ray.__version__)' || exit 3

stamp "stats: AutoFormer, 100 archs, every pass, 6 Ray actors x 1/6 GPU"
timeout "$(left 200)" "${ap[@]}" stats --space autoformer --pass hessian --pass jacobian \
    --device "$dev" --cache-dir "$cache" --backend ray --workers 6 "${gpu[@]}" "${small[@]}"
stamp "stats rc=$?"

pids=()
for run in c100_kd_hessian c100_kd; do
    for fold in 0 1 2 3 4 final; do
        OMP_NUM_THREADS=1 timeout "$(left 90)" "${ap[@]}" evolve --config "runs/$run.yaml" \
            --out "$work/$run" --cv 5 --fold "$fold" --resume "${evo[@]}" >"$work/logs/$run.$fold.log" 2>&1 &
        pids+=($!)
    done
done
stamp "started ${#pids[@]} evolve folds"

# the GPU path, beside the folds (two cores, the GPU otherwise idle)
timeout 90 "${ap[@]}" stats --space autoformer --limit 10 --device "$dev" \
    --cache-dir "$work/serial" "${small[@]:2}"
for c in "$cache" "$work/serial"; do
    timeout 90 "${ap[@]}" bench --space autoformer --limit 10 --proxy snip zico naswot grad_norm params \
        --device "$dev" --cache-dir "$c" --out "$c.bench" "${small[@]:2}"
done
if cmp -s "$cache.bench/scores.csv" "$work/serial.bench/scores.csv"; then
    stamp "scores.csv: serial == ray (byte for byte)"
else
    stamp "scores.csv: serial != ray"; diff "$cache.bench/scores.csv" "$work/serial.bench/scores.csv" | head
fi
t0=$SECONDS
timeout 90 "${ap[@]}" search --space autoformer --proxy snip --budget 50 --device "$dev" --out "$work/search50"
stamp "search 50 candidates --device $dev rc=$? wall_s=$((SECONDS - t0))"

rcs=()
for p in "${pids[@]}"; do wait "$p"; rcs+=($?); done
stamp "evolve folds rc: ${rcs[*]}"
for run in c100_kd_hessian c100_kd; do
    OMP_NUM_THREADS=1 timeout "$(left 5)" "${ap[@]}" evolve --config "runs/$run.yaml" \
        --out "$work/$run" --cv 5 --resume "${evo[@]}" >"$work/logs/$run.gather.log" 2>&1 &
done
wait
stamp "gathered"
for run in c100_kd_hessian c100_kd; do tail -3 "$work/logs/$run.gather.log"; cat "$work/$run/cv.md" 2>/dev/null | head -30; done
tar czf "$out/runs.tar.gz" --exclude='*.png' -C "$work" c100_kd_hessian c100_kd logs 2>/dev/null
cp "$cache.bench/bench.csv" "$out/bench_cuda.csv" 2>/dev/null
stamp "done"
