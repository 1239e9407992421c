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

# torch first and pinned: a bare `torch` would pull the CUDA build (several GB). Without an NVIDIA GPU, the CPU
# build from PyTorch's own CPU index (the default index would resolve to the CUDA build and ~16 nvidia-* packages);
# where that index is not reachable, the default index (as on machines with a local wheel).
cpu_index=https://download.pytorch.org/whl/cpu
if ! python3 -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found: installing torch 2.13.0 (CUDA build) from the default index"
        python3 -m pip install --progress-bar on torch==2.13.0
    else
        echo "setup: no NVIDIA GPU: installing torch 2.13.0, CPU build, from $cpu_index"
        python3 -m pip install --progress-bar on --timeout 20 --retries 1 torch==2.13.0 --index-url "$cpu_index" \
            || { echo "setup: $cpu_index not reachable: installing torch 2.13.0 from the default index";
                 python3 -m pip install --progress-bar on torch==2.13.0; }
    fi
fi
echo "setup: $(python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda or "none (CPU build)")')"
extras="eval,demo,vc"
[ "${1:-}" = dev ] && extras="eval,demo,vc,dev"
echo "setup: installing vqspeech[$extras] and its dependencies (a few minutes on a fresh machine)"
# One line per package as pip collects it (its errors still go to stderr, and its exit status stops the script).
python3 -m pip install -e ".[$extras]" > >(grep --line-buffered -E "^(Collecting|Successfully)" || true)
# resemblyzer (speaker embeddings, weights in the wheel) without its stale requirements: see pyproject's `vc`.
python3 -c "import resemblyzer" 2>/dev/null || python3 -m pip install -q --no-deps resemblyzer==0.1.4
echo "setup: done ($(python3 -c 'import vqspeech; print("vqspeech", vqspeech.__version__)'))"
