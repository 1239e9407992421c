#!/usr/bin/env bash
# wavenet on a GPU machine: the same `vqspeech train-wavenet` as run.sh stage 0, for a few minutes on one GPU, from
# a compact copy of the data that travels with the checkout (the device tool sends at most 64 MiB in all).
#
#   recipes/wavenet/gpu.sh --model M --manifest data/vcc2016/manifest.csv          here: pack into .gpu/
#   device run, carry [".gpu"]: bash recipes/wavenet/gpu.sh --stage 1 --stop-stage 1 --minutes 8   there: train
#   then, here: the checkpoint under the device tool's files_at is a base for run.sh (--model) or export
#
# Stages:
#   0  pack (here): --per-speaker training and --valid held-out utterances of each speaker of --manifest (audio
#      and their cached pitch and d-vectors, paths kept relative), the model, and the wheels of what the GPU
#      machine's Python lacks (soundfile, soxr, librosa and theirs, praat-parselmouth)      -> .gpu/ (git-ignored)
#   1  train (there): install the wheels in /tmp/site, train-wavenet from the packed model on the packed manifest,
#      checkpoints every --checkpoint-every steps; at --minutes it stops and the last checkpoint goes to
#      $OUT/wavenet-gpu.pt with the run's CSVs and log (held-out speech metrics need pesq/pystoi: left to here)
# Options (--name value):
#   --model --manifest   as run.sh (stage 0)
#   --per-speaker --valid  utterances per speaker (default 30 and 4: about 23 MB of VCC 2016 FLAC)
#   --conf      config (default conf/parallel-input.yaml), then conf/gpu.yaml on top
#   --minutes   training time on the GPU (default 8; the device tool allows 10 per command)
#   --steps     train.steps (default 20000: the clock stops it first)   --checkpoint-every (default 250)
#   --overlay   a config after conf/gpu.yaml (recipes/conf/debug.yaml: a smoke run of stage 1 on a CPU)
#   --wheels-too false: pack no wheels (for a machine that has the packages; the tests)
#   --pack      the folder (default .gpu in the checkout)   --python --stage --stop-stage
stage=0
stop_stage=0
model=""
manifest=""
per_speaker=30
valid=4
conf="$(dirname "$0")/conf/parallel-input.yaml"
minutes=8
steps=20000
checkpoint_every=250
pack=""
overlay=""
wheels_too=true
python=python3
source "$(dirname "$0")/../utils/common.sh"
: "${pack:=$repo/.gpu}"
# The versions this project is tested with here; the GPU machine's Python (3.12) has numpy, scipy, numba,
# scikit-learn, torch, tensorboard, tqdm and pyyaml already (/work/.library/device/KINDS.md lists its packages).
wheels=(soundfile==0.14.0 cffi==2.0.0 pycparser==3.0 soxr==1.1.0 librosa==0.11.0 audioread==3.1.0 decorator==5.2.1
        pooch==1.9.0 platformdirs==4.14.9 praat-parselmouth==0.4.7)

if stage_on 0 "pack the data, the model and the wheels -> $pack"; then
    [ -n "$model" ] || die "--model: give the model whose WaveNet is trained"
    [ -f "$manifest" ] || die "${manifest:-(none)}: no such manifest; give --manifest"
    rm -rf "$pack" && mkdir -p "$pack/data" "$pack/whl"
    "$python" - "$manifest" "$pack/data" "$per_speaker" "$valid" <<'EOF'
import csv, shutil, sys
from pathlib import Path
manifest, out, per_speaker, valid = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(manifest) as f:
    reader = csv.DictReader(f)
    fields, rows = reader.fieldnames, list(reader)
keep, count = [], {}
for row in rows:  # the first utterances of each speaker and split, in manifest order
    n = count.setdefault((row["speaker"], row["split"]), 0)
    if n < {"train": per_speaker, "valid": valid}.get(row["split"], 0):
        count[row["speaker"], row["split"]] = n + 1
        keep.append(row)
for row in keep:
    src = Path(row["path"]) if Path(row["path"]).is_absolute() else manifest.parent / row["path"]
    rel = Path("audio") / row["speaker"] / src.name
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    for cached in [src, *src.parent.glob(src.name + ".*")]:  # the audio and its pitch / d-vector caches
        shutil.copy2(cached, out / rel.parent / cached.name)
    row["path"] = str(rel)
with open(out / "manifest.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(keep)
if (manifest.parent / "speakers.csv").exists():
    shutil.copy2(manifest.parent / "speakers.csv", out / "speakers.csv")
print(f"packed {len(keep)} utterances", file=sys.stderr)
EOF
    "$python" -c "import sys; from vqspeech import checkpoint; checkpoint.load_checkpoint(sys.argv[1])" "$model" 2>/dev/null \
        || die "$model: not a model or checkpoint file"
    # A model inside the checkout travels with it; only one from elsewhere is copied into the pack.
    model_path=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
    case $model_path in
        "$repo"/*) echo "${model_path#"$repo"/}" > "$pack/model.txt" ;;
        *) cp "$model" "$pack/model.pt" ;;
    esac
    [ "$wheels_too" = true ] && "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$pack/whl" "${wheels[@]}" 2>/dev/null || [ "$wheels_too" != true ] \
        || die "pip download failed (the wheels for the GPU machine)"
    echo "packed: $(du -sh "$pack" | cut -f1) in $pack (with the checkout: keep it under 64 MiB)" >&2
fi

if stage_on 1 "train the WaveNet on the GPU for $minutes minutes"; then
    if [ -f "$pack/model.pt" ]; then
        base="$pack/model.pt"
    else
        [ -f "$pack/model.txt" ] || die "$pack: nothing packed; run stage 0 here and carry it"
        base="$repo/$(cat "$pack/model.txt")"
        [ -f "$base" ] || die "$base: the model named in $pack/model.txt is missing"
    fi
    extra=()
    [ -n "$overlay" ] && extra=(--config "$overlay")
    out=${OUT:-$pack/out}
    mkdir -p "$out"
    if ! "$python" -c "import soundfile, soxr, librosa, parselmouth" 2>/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "$pack"/whl/*.whl || die "installing the packed wheels failed"
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    "$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())" >&2
    run="$pack/run"
    # The clock, not the step count, ends the run: timeout stops it, the checkpoints already written stay.
    timeout --signal=INT "$((minutes * 60))" "$python" -m vqspeech.cli train-wavenet --base-model "$base" \
        --config "$conf" --config "$recipe_dir/conf/gpu.yaml" "${extra[@]}" --set "data.manifest=$pack/data/manifest.csv" \
        --set "train.run_dir=$run" --set "train.steps=$steps" --set "train.checkpoint_every=$checkpoint_every" \
        --resume 2>&1 | tr '\r' '\n' | grep -v '^train: ' | tee "$out/train.log" || true
    last=$(latest_checkpoint "$run")
    [ -n "$last" ] || die "no checkpoint was written in $minutes minutes (see $out/train.log)"
    cp "$last" "$out/wavenet-gpu.pt"
    cp "$run"/*.csv "$out/" 2>/dev/null || true
    echo "done: $last -> $out/wavenet-gpu.pt" >&2
fi
