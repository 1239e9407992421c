#!/usr/bin/env bash
# vctk: the CSTR VCTK corpus (0.92: 110 speakers, ~44 h at 48 kHz, 11 GB zip) at the scale of van den
# Oord et al. 2017, for GPUs. Also reads a VCTK 0.80 copy you already have (--data DIR --stage 1).
#
#   recipes/vctk/run.sh                                   download, prepare, train, evaluate, convert
#   recipes/vctk/run.sh --data ~/corpora/VCTK-Corpus --stage 1     use a copy you have (0.92 or 0.80)
#   torchrun-style multi-GPU training: run stage 2's command by hand with torchrun (see recipes/README.md)
#
# Stages:
#   0  download VCTK 0.92 from Edinburgh DataShare, check its SHA-256, unzip      -> $data
#   1  prepare: 16 kHz, trimmed, level-normalised; $valid utterances of every training speaker held
#      out for validation, the fixed speaker list corpora.VCTK_UNSEEN held out whole  -> $prepared
#   2  train ($conf = conf/base.yaml, then each file in $overlay)                  -> $run_dir
#   3  evaluate: encode + decode $eval_utts held-out utterances per seen speaker, score  -> $run_dir/eval
#   4  convert $convert_utts utterances of each unseen speaker to $targets         -> $run_dir/convert
# Every stage keeps what an earlier run made: run it again and it does only what is missing.
#
# Options (--name value):
#   --data         the corpus root, holding wav48_silence_trimmed/ (0.92) or wav48/ (0.80), txt/ and
#                  speaker-info.txt (default data/vctk/VCTK-Corpus-0.92, where stage 0 puts it)
#   --url --sha256 where stage 0 downloads from, and the archive's expected SHA-256
#   --mic          mic1 or mic2 (0.92 only; default mic1)
#   --valid        held-out utterances per training speaker (default 10)
#   --unseen       speakers held out whole, comma-separated (default: corpora.VCTK_UNSEEN; "none": no one)
#   --targets      training speakers that stage 4 converts to (default p225,p227,p229,p232)
#   --prepared --run-dir   folders (default data/vctk/prepared, runs/vctk)
#   --conf --overlay       training config and space-separated overlays
#   --eval-utts --convert-utts   utterances per speaker in stages 3 and 4 (default 1 and 2)
#   --jobs         processes for prepare (default 4)
#   --decoder      autoregressive (the WaveNet) or parallel (the fast decoder, if the model has one) in the
#                  evaluate and convert stages (default autoregressive)
#   --python --stage --stop-stage
stage=0
stop_stage=4
data=""
url=https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip
# SHA-256 of VCTK-Corpus-0.92.zip as torchaudio's VCTK_092 dataset checks it (DataShare lists no hash).
sha256=f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c
mic=mic1
valid=10
unseen=""
targets=p225,p227,p229,p232
prepared=""
run_dir=""
conf="$(dirname "$0")/conf/base.yaml"
overlay=""
eval_utts=1
convert_utts=2
decoder=autoregressive
jobs=4
python=python3
source "$(dirname "$0")/../utils/common.sh"

: "${data:=$repo/data/vctk/VCTK-Corpus-0.92}" "${prepared:=$repo/data/vctk/prepared}" "${run_dir:=$repo/runs/vctk}"

if stage_on 0 "download VCTK 0.92 from $url"; then
    if [ -f "$data/.complete" ]; then
        echo "$data: already downloaded and checked" >&2
    else
        command -v curl >/dev/null || die "curl not found: install it (sudo apt-get install curl) or download $url by hand and unzip it into $data"
        zip="$(dirname "$data")/$(basename "$url")"
        mkdir -p "$(dirname "$data")"
        if [ ! -f "$zip" ]; then
            # -C -: an interrupted download continues where it stopped
            curl -L --fail --retry 3 -C - -o "$zip.part" "$url" || die "download of $url failed (rerun to continue it)"
            echo "$sha256  $zip.part" | sha256sum --check --status \
                || die "$zip.part: SHA-256 is not $sha256 (corrupt or changed download; delete it and rerun)"
            mv "$zip.part" "$zip"
        fi
        rm -rf "$data.unzip"
        "$python" -m zipfile -e "$zip" "$data.unzip"
        [ -d "$data.unzip/wav48_silence_trimmed" ] && [ -f "$data.unzip/speaker-info.txt" ] \
            || die "$zip: no wav48_silence_trimmed/ and speaker-info.txt inside: not VCTK 0.92"
        rm -rf "$data" && mv "$data.unzip" "$data" && touch "$data/.complete"
        echo "$data: VCTK 0.92 ready ($(ls "$data/wav48_silence_trimmed" | wc -l) speakers); $zip may be deleted" >&2
    fi
fi

if stage_on 1 "prepare $data"; then
    unseen_opt=()
    if [ "$unseen" = none ]; then unseen_opt=(--unseen ""); elif [ -n "$unseen" ]; then unseen_opt=(--unseen "$unseen"); fi
    vqspeech prepare vctk --data "$data" --out "$prepared" --mic "$mic" --valid "$valid" "${unseen_opt[@]}" --jobs "$jobs"
fi

if stage_on 2 "train"; then
    train "$prepared/manifest.csv" "$run_dir"
fi

if stage_on 3 "evaluate on held-out utterances of seen speakers"; then
    ckpt=$(latest_model "$run_dir")
    evaluate_resynthesis "$prepared/manifest.csv" valid "$eval_utts" "$ckpt" "$run_dir/eval"
fi

if stage_on 4 "convert unseen speakers to ${targets//,/ }"; then
    ckpt=$(latest_model "$run_dir")
    convert_pairs "$prepared/manifest.csv" unseen "" "$convert_utts" "$targets" "$ckpt" "$run_dir/convert"
fi
