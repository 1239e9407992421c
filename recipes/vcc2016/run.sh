#!/usr/bin/env bash
# vcc2016: train and evaluate on the Voice Conversion Challenge 2016 training set (10 speakers x 162
# parallel sentences, 1.6 h), then convert between its 25 source-target pairs.
#
#   recipes/vcc2016/run.sh --data ../shared/data/vcc2016/train
#   recipes/vcc2016/run.sh --data DIR --stage 0 --stop-stage 0            prepare only
#   recipes/vcc2016/run.sh --data DIR --overlay recipes/conf/debug.yaml   a smoke run
#
# Stages:
#   0  prepare: 16 kHz, trimmed, level-normalised; the last 12 sentence ids of every speaker are the
#      validation split (all speakers read the same sentences)                           -> $prepared
#   1  train the VQ-VAE ($conf = conf/cpu.yaml, then each file in $overlay)              -> $run_dir
#   2  train the parallel decoder on the newest VQ-VAE checkpoint, frozen, then fine-tune it, one run per
#      config in $parallel_confs, each from the one before  -> $run_dir/parallel-on-<step>[/convert[/joint]]
#   3  evaluate: encode + decode $eval_utts held-out sentences per speaker, score them   -> $run_dir/eval
#   4  convert held-out sentences of SF1 SF2 SF3 SM1 SM2 to TF1 TF2 TM1 TM2 TM3           -> $run_dir/convert
#   5  export the stage-2 model as a float16 model file (what ships as vqspeech/pretrained/default.pt)
#                                                                                      -> $run_dir/model.pt
#   Stages 3 and 4 use the stage-2 model (both decoders) when there is one, else the VQ-VAE checkpoint.
# Every stage keeps what an earlier run made: run it again and it does only what is missing.
#
# Options (--name value):
#   --data         the VCC 2016 training set, <spk>/1000NN.wav|flac (default ../shared/data/vcc2016/train
#                  beside the repo); official release: https://datashare.ed.ac.uk/handle/10283/2211
#   --prepared --run-dir   folders (default data/vcc2016/prepared, runs/vcc2016)
#   --conf --overlay       training config and space-separated overlays
#   --parallel-confs       the parallel decoder's chain of configs, space-separated (default
#                          "conf/parallel.yaml conf/parallel-convert.yaml conf/parallel-joint.yaml
#                          conf/parallel-adversary.yaml": train on the frozen codes, add the conversion loss,
#                          train the codes too, then push the voice out of the codes with a speaker adversary)
#   --eval-utts    held-out sentences per speaker to decode in stage 3 (default 2)
#   --convert-utts held-out sentences per source speaker to convert in stage 4 (default 1: 25 files)
#   --jobs         processes for prepare (default 1)
#   --decoder      autoregressive (the WaveNet) or parallel (the fast decoder) in the evaluate and convert
#                  stages (default: the parallel one if the model has it)
#   --python --stage --stop-stage
stage=0
stop_stage=5
data=""
prepared=""
run_dir=""
conf="$(dirname "$0")/conf/cpu.yaml"
overlay=""
eval_utts=2
convert_utts=1
decoder=""
conf_dir="$(dirname "$0")/conf"
parallel_confs="$conf_dir/parallel.yaml $conf_dir/parallel-convert.yaml $conf_dir/parallel-joint.yaml $conf_dir/parallel-adversary.yaml"
jobs=1
python=python3
source "$(dirname "$0")/../utils/common.sh"

: "${data:=$repo/../shared/data/vcc2016/train}" "${prepared:=$repo/data/vcc2016/prepared}" "${run_dir:=$repo/runs/vcc2016}"
sources=SF1,SF2,SF3,SM1,SM2
targets=TF1,TF2,TM1,TM2,TM3

if stage_on 0 "prepare $data"; then
    [ -d "$data" ] || die "$data: no such folder; give --data the VCC 2016 training set (<spk>/1000NN.wav), from https://datashare.ed.ac.uk/handle/10283/2211"
    vqspeech prepare vcc2016 --data "$data" --out "$prepared" --jobs "$jobs"
fi

if stage_on 1 "train"; then
    train "$prepared/manifest.csv" "$run_dir"
fi

if stage_on 2 "train the parallel decoder"; then
    # shellcheck disable=SC2086  # a space-separated list of configs
    train_parallel "$prepared/manifest.csv" "$run_dir" $parallel_confs
fi

if stage_on 3 "evaluate on held-out sentences"; then
    ckpt=$(latest_model "$run_dir")
    evaluate_resynthesis "$prepared/manifest.csv" valid "$eval_utts" "$ckpt" "$run_dir/eval"
fi

if stage_on 4 "convert ${sources//,/ } -> ${targets//,/ }"; then
    ckpt=$(latest_model "$run_dir")
    convert_pairs "$prepared/manifest.csv" valid "$sources" "$convert_utts" "$targets" "$ckpt" "$run_dir/convert"
fi

if stage_on 5 "export the model (float16, weights only) -> $run_dir/model.pt"; then
    vqspeech export "$(latest_model "$run_dir")" -o "$run_dir/model.pt" --force
fi
