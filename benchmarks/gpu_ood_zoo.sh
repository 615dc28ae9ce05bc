#!/usr/bin/env bash
# The zoo on OoD-ViT-NAS Small and Base on a GPU, in one short, resumable run (figures in results/zoo-ood-vit-nas.md).
# Per file: `autoprox bench --device cuda` of every zoo proxy but `tvt` (it needs --teacher) on the
# first N archs, its statistics cached on the GPU machine's disk, bounded by a timeout. Run the same
# command again on the warm machine to go on from the cache. Only the tables and scores.csv come back
# (OUT), never the statistics. The OoD-ViT-NAS files carry no license: keep them in an ignored folder of
# the checkout (e.g. `runs/ood/`) and name it in the device tool's carry list.
# Usage: bash benchmarks/gpu_ood_zoo.sh SMALL_JSON BASE_JSON [N] [OUT] [SECONDS_PER_FILE]
set -u
small=${1:?usage: gpu_ood_zoo.sh SMALL_JSON BASE_JSON [N] [OUT] [SECONDS_PER_FILE]}
base=${2:?usage: gpu_ood_zoo.sh SMALL_JSON BASE_JSON [N] [OUT] [SECONDS_PER_FILE]}
n=${3:-200}
out=${4:-gpu-ood-zoo}
limit_s=${5:-240}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run here with a small N
proxies=$(python3 -c "from autoprox.proxy.zoo import list_proxies; print(*(p for p in list_proxies() if p != 'tvt'))")
for pair in "small:$small" "base:$base"; do
    name=${pair%%:*}
    t0=$SECONDS
    timeout "$limit_s" python3 -m autoprox.cli.main bench --space "autoformer-$name" --bench "${pair#*:}" \
        --limit "$n" --device "$device" --cache-dir /tmp/autoprox-gpu-cache --proxy $proxies \
        --out "$out/$name" > "$out/$name.log" 2>&1
    echo "$name archs=$n rc=$? wall_s=$((SECONDS - t0))" | tee -a "$out/times.txt"
    tail -3 "$out/$name.log"
done
