# Sourced by every recipe's run.sh after it has set its defaults; not run on its own.
#
# Options: every variable the recipe sets before sourcing this file can be given on the command line as
# `--name value` (dashes for underscores: --stop-stage 2 sets stop_stage). `--help` prints the comment
# block at the top of the recipe. Paths given on the command line are relative to where you run it.
set -euo pipefail

_script=${BASH_SOURCE[1]:-$0}
die() { echo "$(basename "$(dirname "$_script")")/$(basename "$_script"): error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$_script"; exit 0 ;;
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
        --*)
            _name=${1#--}; _name=${_name//-/_}
            [[ $_name =~ ^[a-z][a-z0-9_]*$ ]] && declare -p "$_name" >/dev/null 2>&1 \
                || die "unknown option $1 (see --help)"
            [ $# -ge 2 ] || die "option $1 needs a value"
            printf -v "$_name" '%s' "$2"; shift 2 ;;
        *) die "unexpected argument $1 (see --help)" ;;
    esac
done
[[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] || die "--stage and --stop-stage take stage numbers"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage comes after --stop-stage $stop_stage: nothing to run"

recipe_dir=$(cd "$(dirname "$_script")" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The recipe runs the package of the repository it lives in, not whichever copy is installed.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
python=${python:-python3}

# The command line, in the exact form users type it.
vqspeech() { "$python" -m vqspeech.cli "$@"; }

# True when stage $1 is within --stage .. --stop-stage; announces it.
stage_on() {
    if [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; then
        echo "=== stage $1: $2 ($(date +%H:%M:%S))" >&2
        return 0
    fi
    return 1
}

# The newest checkpoint of a run folder (checkpoint-<step>.pt, highest step).
latest_checkpoint() {
    local f step best="" best_step=-1
    for f in "$1"/checkpoint-*.pt; do
        step=${f##*/checkpoint-}; step=${step%.pt}
        if [[ -f $f && $step =~ ^[0-9]+$ ]] && [ "$step" -gt "$best_step" ]; then best=$f; best_step=$step; fi
    done
    [ -n "$best" ] || die "no checkpoint in $1: run the training stage first"
    echo "$best"
}

# Train on manifest $1 into run folder $2 with the recipe's $conf and each overlay in $overlay
# (space-separated), then any further arguments; an interrupted run continues from its last checkpoint.
train() {
    local opts=(--config "$conf") o
    for o in $overlay; do
        [ -f "$o" ] || die "$o: no such overlay"
        opts+=(--config "$o")
    done
    [ -f "$conf" ] || die "$conf: no such config"
    vqspeech train "${opts[@]}" --set "data.manifest=$1" --set "train.run_dir=$2" "${@:3}" --resume
}

# Train the parallel decoder on the newest VQ-VAE checkpoint of run folder $2 (kept frozen), with manifest $1
# and config $3, into $2/parallel-on-<step>: a newer VQ-VAE gets a parallel decoder of its own. Each further
# config is an overlay: it fine-tunes the previous run's result with all the configs so far, overlaid in order,
# into a subfolder named after it (e.g. .../convert for parallel-convert.yaml): a chain of runs, each starting
# from the last checkpoint of the one before.
train_parallel() {
    local manifest=$1 run_dir=$2 base step dir conf first=1 opts=()
    shift 2
    base=$(latest_checkpoint "$run_dir")
    step=${base##*/checkpoint-}; step=${step%.pt}
    dir="$run_dir/parallel-on-$step"
    for conf in "$@"; do
        [ -f "$conf" ] || die "$conf: no such config"
        [ $first = 1 ] || dir="$dir/$(basename "$conf" .yaml | sed 's/^parallel-//')"
        first=0
        opts+=(--config "$conf")
        vqspeech train-parallel --base-model "$base" "${opts[@]}" --set "data.manifest=$manifest" --set "train.run_dir=$dir" --resume
        base=$(latest_checkpoint "$dir")
    done
}

# The model to evaluate or convert with: the last run of the parallel-decoder chain on the newest VQ-VAE
# checkpoint of run folder $1 (it holds both decoders), else that VQ-VAE checkpoint itself.
latest_model() {
    local base step deepest
    base=$(latest_checkpoint "$1")
    step=${base##*/checkpoint-}; step=${step%.pt}
    deepest=$(find "$1/parallel-on-$step" -name 'checkpoint-*.pt' -printf '%d %h\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
    if [ -n "$deepest" ]; then latest_checkpoint "$deepest"; else echo "$base"; fi
}

# Rows of a manifest as speaker<TAB>utterance<TAB>path: $1 manifest, $2 split, $3 how many per speaker,
# $4 speakers (comma-separated; empty: all).
select_rows() { "$python" "$repo/recipes/utils/manifest_rows.py" "$@"; }

# Evaluate resynthesis: encode and decode $3 held-out utterances per speaker of split $2 of manifest $1
# with model $4 into folder $5, then score decoded against original. Files already made are kept.
evaluate_resynthesis() {
    local manifest=$1 split=$2 per_speaker=$3 ckpt=$4 dir=$5 spk utt path
    mkdir -p "$dir"
    select_rows "$manifest" --split "$split" --per-speaker "$per_speaker" > "$dir/rows.tsv"
    : > "$dir/pairs.tsv"
    while IFS=$'\t' read -r -u 3 spk utt path; do
        mkdir -p "$dir/codes/$spk" "$dir/decoded/$spk"
        [ -f "$dir/codes/$spk/$utt.vqs" ] || vqspeech encode "$path" -o "$dir/codes/$spk/$utt.vqs" --model "$ckpt"
        [ -f "$dir/decoded/$spk/$utt.wav" ] || vqspeech decode "$dir/codes/$spk/$utt.vqs" -o "$dir/decoded/$spk/$utt.wav" --model "$ckpt" ${decoder:+--decoder "$decoder"}
        printf '%s\t%s\t%s\t%s\n' "$spk" "$utt" "$path" "$dir/decoded/$spk/$utt.wav" >> "$dir/pairs.tsv"
    done 3< "$dir/rows.tsv"
    "$python" "$repo/recipes/utils/score.py" "$dir/pairs.tsv" -o "$dir/scores.csv"
}

# Convert: $4 utterances per source speaker (comma list $3; empty: all) of split $2 of manifest $1 to
# every target speaker in comma list $5, with model $6, into $7/<source>-<target>/<utterance>.wav.
# pairs.tsv there lists source, target, utterance, source file, converted file. Files already made are kept.
convert_pairs() {
    local manifest=$1 split=$2 sources=$3 per_speaker=$4 targets=$5 ckpt=$6 dir=$7 spk utt path tgt out
    mkdir -p "$dir"
    select_rows "$manifest" --split "$split" --per-speaker "$per_speaker" --speakers "$sources" > "$dir/rows.tsv"
    : > "$dir/pairs.tsv"
    while IFS=$'\t' read -r -u 3 spk utt path; do
        for tgt in ${targets//,/ }; do
            out="$dir/$spk-$tgt/$utt.wav"
            mkdir -p "$dir/$spk-$tgt"
            [ -f "$out" ] || vqspeech convert "$path" --to "$tgt" -o "$out" --model "$ckpt" ${decoder:+--decoder "$decoder"}
            printf '%s\t%s\t%s\t%s\t%s\n' "$spk" "$tgt" "$utt" "$path" "$out" >> "$dir/pairs.tsv"
        done
    done 3< "$dir/rows.tsv"
}
