#!/usr/bin/env bash
# The quantizer ablation (#16): the three training rules of the seeds on one budget, through one decoder.
# For each arm, a VQ-VAE of conf/cpu.yaml + the arm's overlay trained for one step (which k-means-initialises its
# codebook), then its codes and the parallel decoder trained jointly for conf/ablations/quantizer-arm.yaml's steps
# on VCC 2016, seed 0. bench/quantizers.py tabulates the runs.
#
#   recipes/vcc2016/quantizers.sh --prepared data/vcc2016/prepared          all arms, one after another
#   recipes/vcc2016/quantizers.sh --prepared DIR --arms "soft-em gumbel"    some arms
#
# Arms: ema (the default: nearest codes, EMA codebook), codebook-loss (nearest codes, the paper's codebook loss),
# soft-em (conf/ablations/soft-em.yaml), gumbel (conf/ablations/gumbel.yaml); and for codes at two rates (EMA):
# two-rate (conf/ablations/two-rate.yaml: K=128 bottom + K=256 top, the default's 2250 bit/s) and k128 (its bottom
# codes alone, 1750 bit/s).
#
# Options (--name value):
#   --prepared   the prepared VCC 2016 folder (recipes/vcc2016/run.sh stage 0; default data/vcc2016/prepared)
#   --run-dir    where the arms' runs go (default runs/quantizers; <arm>/base, <arm>/joint)
#   --arms       space-separated (default "ema codebook-loss soft-em gumbel")
#   --overlay    space-separated configs laid over both stages of every arm (recipes/conf/debug.yaml for a smoke run)
#   --python --stage --stop-stage   (one stage: 0)
stage=0
stop_stage=0
prepared=""
run_dir=""
arms="ema codebook-loss soft-em gumbel"
overlay=""
python=python3
source "$(dirname "$0")/../utils/common.sh"
: "${prepared:=$repo/data/vcc2016/prepared}" "${run_dir:=$repo/runs/quantizers}"
conf="$recipe_dir/conf"

if stage_on 0 "train the arms: $arms"; then
    [ -f "$prepared/manifest.csv" ] || die "$prepared/manifest.csv: no such file; prepare VCC 2016 first (recipes/vcc2016/run.sh --stop-stage 0)"
    extra=()
    for o in $overlay; do
        [ -f "$o" ] || die "$o: no such config"
        extra+=(--config "$o")
    done
    for arm in $arms; do
        case $arm in
            ema) arm_conf=() ;;
            codebook-loss|soft-em|gumbel|two-rate|k128) arm_conf=(--config "$conf/ablations/$arm.yaml") ;;
            *) die "unknown arm $arm: choose from ema codebook-loss soft-em gumbel two-rate k128" ;;
        esac
        echo "--- $arm" >&2
        [ -n "$(latest_checkpoint "$run_dir/$arm/base")" ] || vqspeech train --config "$conf/cpu.yaml" "${arm_conf[@]}" \
            "${extra[@]}" --set "data.manifest=$prepared/manifest.csv" --set "train.run_dir=$run_dir/$arm/base" \
            --set train.steps=1 --set train.seed=0 --set train.eval_every=0
        vqspeech train-parallel --base-model "$(latest_checkpoint "$run_dir/$arm/base")" --config "$conf/parallel.yaml" \
            --config "$conf/ablations/quantizer-arm.yaml" "${extra[@]}" --set "data.manifest=$prepared/manifest.csv" \
            --set "train.run_dir=$run_dir/$arm/joint" --resume
    done
fi
