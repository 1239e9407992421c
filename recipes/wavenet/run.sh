#!/usr/bin/env bash
# wavenet: the paper's autoregressive WaveNet decoder, trained alone on a finished model (`vqspeech train-wavenet`):
# the model's codes, voice, conditioning network and parallel decoder stay frozen, so its files and its parallel
# decoding are untouched; the WaveNet reads the parallel decoder's rendering beside the pitch excitation
# (model.decoder.parallel_input) and models what that rendering misses.
#
#   recipes/wavenet/run.sh --model vqspeech/pretrained/default.pt --manifest data/vcc2016/manifest.csv
#
# Stages:
#   0  train-wavenet from --model on the manifest's training split (resumes)            -> $run_dir
#   1  export the last checkpoint as a float16 model file (every part's training cost kept)  -> $run_dir/model.pt
#   2  score it: bench/codec.py on held-out sentences, both decoders, codec2 and Opus in the same run
#                                                                                        -> $run_dir/bench/
# Options (--name value):
#   --model     the model whose WaveNet is trained (a path or a shipped model's name; it needs a parallel decoder)
#   --manifest  the corpus it was trained on (its training speakers), e.g. recipes/vcc2016 stage 0's manifest
#   --run-dir   folder (default runs/wavenet)
#   --conf      config (default conf/parallel-input.yaml)    --overlay  a config on top (e.g. ../conf/debug.yaml)
#   --set       one override, e.g. train.steps=200
#   --limit     held-out utterances scored at stage 2 (default 20)
#   --python --stage --stop-stage
stage=0
stop_stage=2
model=""
manifest=""
run_dir=""
conf="$(dirname "$0")/conf/parallel-input.yaml"
overlay=""
set=""
limit=20
python=python3
source "$(dirname "$0")/../utils/common.sh"

: "${run_dir:=$repo/runs/wavenet}"
[ -n "$model" ] || die "--model: give the model whose WaveNet is trained (see --help)"
[ -f "$manifest" ] || die "${manifest:-(none)}: no such manifest; give --manifest (the corpus the model was trained on)"
overrides=(--config "$conf" --set "train.run_dir=$run_dir" --set "data.manifest=$manifest")
[ -n "$overlay" ] && overrides+=(--config "$overlay")
[ -n "$set" ] && overrides+=(--set "$set")

if stage_on 0 "train the WaveNet on the frozen model"; then
    vqspeech train-wavenet --base-model "$model" "${overrides[@]}" --resume
fi

if stage_on 1 "export"; then
    vqspeech export "$(latest_checkpoint "$run_dir")" -o "$run_dir/model.pt" --force
fi

if stage_on 2 "score both decoders against codec2 and Opus"; then
    "$python" "$repo/bench/codec.py" --model "$run_dir/model.pt" --manifest "$manifest" --split valid --limit "$limit" \
        --decoders parallel,autoregressive --threads 1 --out "$run_dir/bench" --name codec-wavenet
fi
