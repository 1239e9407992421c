#!/usr/bin/env bash
# Install vqspeech and the system tools it uses; safe to run again (installs only what is missing).
#   bash setup.sh          the package, evaluation tools and the demo
#   bash setup.sh dev      ... plus the test tools
# GPU users: install the CUDA build of torch 2.13.0 first (see README); pip then keeps it.
set -euo pipefail
cd "$(dirname "$0")"

apt_packages=(flite sox codec2 opus-tools espeak-ng libsndfile1)
[ "${1:-}" = dev ] && apt_packages+=(chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" != 0 ] && sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# torch first and pinned: a bare `torch` would pull the CUDA build (several GB).
python3 -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
    || python3 -m pip install -q torch==2.13.0
extras="eval,demo,vc"
[ "${1:-}" = dev ] && extras="eval,demo,vc,dev"
python3 -m pip install -q -e ".[$extras]"
# resemblyzer (speaker embeddings, weights in the wheel) without its stale requirements: see pyproject's `vc`.
python3 -c "import resemblyzer" 2>/dev/null || python3 -m pip install -q --no-deps resemblyzer==0.1.4
echo "setup: done ($(python3 -c 'import vqspeech; print("vqspeech", vqspeech.__version__)'))"
