#!/usr/bin/env bash
# prior: the prior over a model's codes (vqspeech/models/prior.py), the entropy model of .vqs version 4 and the
# sampler of `vqspeech sample` / `vqspeech continue`. It learns from the codes the frozen model makes of a corpus.
#
#   recipes/prior/run.sh --model vqspeech/pretrained/default.pt --manifest data/anyvoice/combined/manifest.csv \
#       --overlay recipes/prior/conf/frame.yaml
#
# Stages:
#   0  train-prior: first the model's codes of every utterance of --manifest, encoded as `vqspeech encode`
#      writes them (speaker auto, plain packing), cached                        -> $run_dir/codes.npz
#      then the prior on the "train" split; held-out bits per code of "valid" and "unseen" against CPU-hours in
#      $run_dir/valid.csv, and the prior file (its exact integer twin)         -> $run_dir/prior.pt
#   1  install it beside the model (MODEL.prior.pt), where encode and decode find it (--install yes)
# Run it again and it does only what is missing (stage 0 resumes; the codes are kept while the model is the same).
#
# Options (--name value):
#   --model     the codec model whose codes the prior models (a path, or a shipped model's name)
#   --manifest  the corpus (a manifest with train / valid / unseen splits: recipes/anyvoice stage 1 makes one)
#   --run-dir   folder (default runs/prior)
#   --conf      config (default conf/prior.yaml)    --set   one override, e.g. train.steps=200
#   --overlay   a config on top of it, e.g. conf/frame.yaml (the frame prior the default model ships)
#   --install   yes: copy the prior beside the model at stage 2 (default no: print the command)
#   --python --stage --stop-stage
stage=0
stop_stage=1
model=""
manifest=""
run_dir=""
conf="$(dirname "$0")/conf/prior.yaml"
overlay=""
set=""
install=no
python=python3
source "$(dirname "$0")/../utils/common.sh"

: "${run_dir:=$repo/runs/prior}"
[ -n "$model" ] || die "--model: give the codec model whose codes the prior learns (see --help)"
overrides=(--set "train.run_dir=$run_dir" --set "train.codes=$run_dir/codes.npz")
if [ -n "$overlay" ]; then
    [ -f "$overlay" ] || die "$overlay: no such config"
    overrides=(--config "$overlay" "${overrides[@]}")
fi
[ -n "$set" ] && overrides+=(--set "$set")

if stage_on 0 "train the prior"; then
    [ -f "$run_dir/codes.npz" ] || [ -f "$manifest" ] || die "${manifest:-(none)}: no such manifest, and no codes in $run_dir; give --manifest"
    [ -f "$manifest" ] && overrides+=(--set "train.manifest=$manifest")
    vqspeech train-prior --model "$model" --config "$conf" "${overrides[@]}" --resume
fi

if stage_on 1 "install the prior beside the model"; then
    [ -f "$run_dir/prior.pt" ] || die "$run_dir/prior.pt: no prior yet (stage 0)"
    target=$("$python" -c "import sys; from vqspeech import checkpoint; print(checkpoint.prior_path(checkpoint.resolve(sys.argv[1])))" "$model")
    if [ "$install" = yes ]; then
        cp "$run_dir/prior.pt" "$target"
        echo "installed: $target"
    else
        echo "to install: cp $run_dir/prior.pt $target"
    fi
fi
