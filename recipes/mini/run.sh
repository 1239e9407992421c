#!/usr/bin/env bash
# mini: a multi-speaker corpus synthesized with flite, small enough for a CPU and for CI.
#
#   recipes/mini/run.sh                             all stages
#   recipes/mini/run.sh --debug true                CI: 30 utterances, the tiny debug model, 6 steps
#   recipes/mini/run.sh --stage 2 --stop-stage 2    one stage
#   recipes/mini/run.sh --text my_sentences.txt     speak your own prompts (one sentence per line)
#
# Stages:
#   0  synthesize: flite voices awb slt rms kal and pitch/rate variants, VCTK layout   -> $data
#   1  prepare: 16 kHz, trimmed, level-normalised, manifest with splits                -> $prepared
#   2  train ($conf, then each file in $overlay)                                       -> $run_dir
#   3  encode and decode one held-out utterance                                        -> $run_dir/roundtrip
# Every stage keeps what an earlier run made: run it again and it does only what is missing.
#
# Options (--name value):
#   --text         prompts (default ../shared/data/text/harvard_sentences.txt beside the repo if there,
#                  else recipes/mini/prompts.txt)
#   --speakers     flite speakers, at most 10 (default 8; debug 5)
#   --per-speaker  prompts per speaker; all speakers read the same ones (default 40; debug 6)
#   --valid        held-out utterances per training speaker (default 4; debug 1)
#   --unseen       speakers held out whole (default kal)
#   --data --prepared --run-dir   folders (default data/mini/corpus, data/mini/prepared, runs/mini)
#   --conf --overlay              training config and space-separated overlays
#   --seconds      how much of the held-out file stage 3 decodes (default 2; debug 0.5)
#   --debug true   the CI setting: small corpus and recipes/conf/debug.yaml on top
#   --python --stage --stop-stage
stage=0
stop_stage=3
text=""
speakers=""
per_speaker=""
valid=""
unseen=kal
data=""
prepared=""
run_dir=""
conf="$(dirname "$0")/conf/base.yaml"
overlay=""
seconds=""
debug=false
python=python3
source "$(dirname "$0")/../utils/common.sh"

if [ "$debug" = true ]; then
    : "${speakers:=5}" "${per_speaker:=6}" "${valid:=1}" "${seconds:=0.5}"
    overlay="$repo/recipes/conf/debug.yaml $overlay"
fi
: "${speakers:=8}" "${per_speaker:=40}" "${valid:=4}" "${seconds:=2}"
: "${data:=$repo/data/mini/corpus}" "${prepared:=$repo/data/mini/prepared}" "${run_dir:=$repo/runs/mini}"
if [ -z "$text" ]; then
    text="$repo/../shared/data/text/harvard_sentences.txt"
    [ -f "$text" ] || text="$recipe_dir/prompts.txt"
fi

if stage_on 0 "synthesize $speakers speakers x $per_speaker prompts from $text"; then
    vqspeech synth-corpus --out "$data" --text "$text" --speakers "$speakers" --per-speaker "$per_speaker"
fi

if stage_on 1 "prepare"; then
    vqspeech prepare vctk --data "$data" --out "$prepared" --valid "$valid" --unseen "$unseen" --strict
fi

if stage_on 2 "train"; then
    train "$prepared/manifest.csv" "$run_dir"
fi

if stage_on 3 "encode and decode one held-out utterance"; then
    ckpt=$(latest_checkpoint "$run_dir")
    IFS=$'\t' read -r spk utt wav < <("$python" "$recipe_dir/../utils/manifest_rows.py" "$prepared/manifest.csv" --split valid --per-speaker 1 | head -n 1)
    mkdir -p "$run_dir/roundtrip"
    # The autoregressive decoder is slow on a CPU: the round trip takes the first --seconds of the file.
    sox "$wav" "$run_dir/roundtrip/$utt.orig.wav" trim 0 "$seconds"
    vqspeech encode "$run_dir/roundtrip/$utt.orig.wav" -o "$run_dir/roundtrip/$utt.vqs" --model "$ckpt" --speaker "$spk" --force -q
    vqspeech info "$run_dir/roundtrip/$utt.vqs"
    vqspeech decode "$run_dir/roundtrip/$utt.vqs" -o "$run_dir/roundtrip/$utt.decoded.wav" --model "$ckpt" --force -q
fi
