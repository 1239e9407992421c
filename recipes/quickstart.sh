#!/usr/bin/env bash
# The quick start: the shipped default model on one recording, no download, no training.
#
#   bash recipes/quickstart.sh                 a sentence synthesized with flite (Debian's `flite`, voice slt)
#   bash recipes/quickstart.sh my_voice.wav    your own recording (any common format and rate)
#   bash recipes/quickstart.sh IN --to TM1 --out DIR
#
# It lists the model's voices, round-trips the recording through the codec (encode -> .vqs -> decode) and
# converts it to another voice, and says where everything went:
#   DIR/input.wav  DIR/input.vqs  DIR/input.decoded.wav  DIR/input.SPEAKER.wav       (default DIR: quickstart/)
set -euo pipefail

input=""
to=TM1
out=quickstart
python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --to) to="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "quickstart.sh: unknown option $1" >&2; exit 2 ;;
    *) input="$1"; shift ;;
  esac
done

vqspeech() { "$python" -m vqspeech.cli "$@"; }
mkdir -p "$out"

if [ -z "$input" ]; then
  command -v flite >/dev/null || { echo "quickstart.sh: flite is not installed (bash setup.sh installs it), or give your own audio file" >&2; exit 1; }
  text="The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
  flite -voice slt -t "$text" -o "$out/input.tmp.wav"
  mv "$out/input.tmp.wav" "$out/input.wav"
  input="$out/input.wav"
  echo "input: flite (voice slt) saying \"$text\" -> $out/input.wav"
else
  [ -f "$input" ] || { echo "quickstart.sh: $input: no such file" >&2; exit 1; }
  cp "$input" "$out/input.${input##*.}"
  input="$out/input.${input##*.}"
fi

echo "== the default model's voices"
vqspeech speakers
echo "== codec: encode, inspect, decode"
vqspeech encode "$input" -o "$out/input.vqs" --force -q
vqspeech info "$out/input.vqs"
vqspeech decode "$out/input.vqs" -o "$out/input.decoded.wav" --force -q
echo "== voice conversion to $to"
vqspeech convert "$input" --to "$to" -o "$out/input.$to.wav" --force -q
echo "done: listen to $input (original), $out/input.decoded.wav (through the codec) and $out/input.$to.wav (as $to)"
