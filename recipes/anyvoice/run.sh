#!/usr/bin/env bash
# anyvoice: model v4, a voice that is a vector. VCC 2016 (10 US speakers) and speechocean762 (240 Mandarin-L1
# speakers, adults and children; 20 of them held out of every run) combined, and a table-voice model (v3, from
# recipes/vcc2016) retrained so that its decoder reads each utterance's resemblyzer d-vector through a learned map.
#
#   recipes/anyvoice/run.sh --base-model runs/vcc2016/.../checkpoint-N.pt
#   recipes/anyvoice/run.sh --base-model v3.pt --stage 0 --stop-stage 1    prepare only
#
# Stages:
#   0  prepare both corpora: 16 kHz, trimmed, level-normalised per file   -> $prepared/vcc2016, $prepared/speechocean762
#   1  combine their manifests (data.corpus_weights samples the corpora 1:1)  -> $prepared/combined
#   2  train-parallel from --base-model with $conf (model.voice: vector; joint, with the code adversary) -> $run_dir
#   3  continue it with $conf + conf/voice-loss.yaml (decodings in other voices pulled toward their d-vectors)
#                                                                          -> $run_dir/voice-loss
#   4  continue it with conf/decoder-side.yaml on top (the decoder side only, on frozen codes: v4 -> v4.1)
#                                                                          -> $run_dir/voice-loss/decoder-side
#   5  export the last checkpoint of stage 4 as a float16 model file       -> $run_dir/model.pt
# Every stage keeps what an earlier run made: run it again and it does only what is missing (stage 2 resumes).
#
# Options (--name value):
#   --base-model   a table-voice model with a parallel decoder: the last checkpoint of recipes/vcc2016/run.sh
#                  stage 2, or model v3 as shipped before v4 (`git show 826393e:vqspeech/pretrained/default.pt > v3.pt`)
#   --vcc          VCC 2016 training set (default ../shared/data/vcc2016/train beside the repo)
#   --speechocean  speechocean762 (default ../shared/data/speechocean762 beside the repo)
#   --prepared --run-dir   folders (default data/anyvoice, runs/anyvoice)
#   --conf --overlay       training config (default conf/voice-vector.yaml) and space-separated overlays (both runs)
#   --voice-loss           stage 3's overlay (default conf/voice-loss.yaml)
#   --decoder-side         stage 4's overlay (default conf/decoder-side.yaml)
#   --jobs         processes for prepare (default 1)
#   --python --stage --stop-stage
stage=0
stop_stage=5
base_model=""
vcc=""
speechocean=""
prepared=""
run_dir=""
conf="$(dirname "$0")/conf/voice-vector.yaml"
voice_loss="$(dirname "$0")/conf/voice-loss.yaml"
decoder_side="$(dirname "$0")/conf/decoder-side.yaml"
overlay=""
jobs=1
python=python3
source "$(dirname "$0")/../utils/common.sh"

: "${vcc:=$repo/../shared/data/vcc2016/train}" "${speechocean:=$repo/../shared/data/speechocean762}"
: "${prepared:=$repo/data/anyvoice}" "${run_dir:=$repo/runs/anyvoice}"

if stage_on 0 "prepare VCC 2016 and speechocean762"; then
    [ -d "$vcc" ] || die "$vcc: no such folder; give --vcc the VCC 2016 training set (<spk>/1000NN.wav)"
    [ -d "$speechocean" ] || die "$speechocean: no such folder; give --speechocean the speechocean762 folder (audio/<spk>/*.flac)"
    vqspeech prepare vcc2016 --data "$vcc" --out "$prepared/vcc2016" --jobs "$jobs"
    vqspeech prepare speechocean762 --data "$speechocean" --out "$prepared/speechocean762" --jobs "$jobs"
fi

if stage_on 1 "combine the manifests"; then
    vqspeech combine "$prepared/vcc2016/manifest.csv" "$prepared/speechocean762/manifest.csv" --out "$prepared/combined"
fi

# train-parallel from model $1 into run folder $2 with $conf, then each further config given, then $overlay.
train_from() {
    local base=$1 dir=$2 opts=(--config "$conf") o
    shift 2
    for o in "$@" $overlay; do
        [ -f "$o" ] || die "$o: no such config"
        opts+=(--config "$o")
    done
    vqspeech train-parallel --base-model "$base" "${opts[@]}" --set "data.manifest=$prepared/combined/manifest.csv" \
        --set "train.run_dir=$dir" --resume
}

if stage_on 2 "train the vector voice from $base_model"; then
    [ -n "$base_model" ] || die "--base-model: give the table-voice model to start from (see --help)"
    [ -f "$base_model" ] || die "$base_model: no such model file"
    train_from "$base_model" "$run_dir"
fi

if stage_on 3 "train conversion to other voices (the voice loss)"; then
    train_from "$(latest_checkpoint "$run_dir")" "$run_dir/voice-loss" "$voice_loss"
fi

if stage_on 4 "train the decoder side on the frozen codes"; then
    train_from "$(latest_checkpoint "$run_dir/voice-loss")" "$run_dir/voice-loss/decoder-side" "$voice_loss" "$decoder_side"
fi

if stage_on 5 "export the model (float16, weights only) -> $run_dir/model.pt"; then
    vqspeech export "$(latest_checkpoint "$run_dir/voice-loss/decoder-side")" -o "$run_dir/model.pt" --force
fi
