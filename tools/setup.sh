#!/usr/bin/env bash
# Installs gpt2-gen's dependencies from Debian packages and PyPI. Idempotent: a second run
# installs nothing new. Usage: tools/setup.sh   (as root, or with sudo available)
set -euo pipefail

debian_packages=(cmake g++ make libcli11-dev nlohmann-json3-dev libgtest-dev clang libclang-rt-dev libomp-dev
                 libhwy-dev libdnnl-dev)  # the last two: the fast CPU path (optional, see CMakeLists.txt)
python_packages=(numpy safetensors tokenizers tiktoken matplotlib huggingface_hub)

# With a CUDA toolkit (nvcc on PATH): clang-19 compiles the kernels against CUDA 12's headers in
# tools/cuda12_check.sh.
if command -v nvcc >/dev/null; then
  debian_packages+=(clang-19)
fi

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import numpy, safetensors, tokenizers, tiktoken, matplotlib, huggingface_hub" 2>/dev/null; then
  echo "setup: installing Python packages: ${python_packages[*]}"
  python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}"
fi
# tests/test_cuda_binary.py reads the CUDA build's fat binaries with cuobjdump: the toolkit's,
# else NVIDIA's from PyPI (0.4 MB; CMake looks in site-packages/nvidia/cu13/bin).
if command -v nvcc >/dev/null && ! command -v cuobjdump >/dev/null &&
   [ ! -x "$(dirname "$(command -v nvcc)")/cuobjdump" ] &&
   ! python3 -c "import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['purelib'], 'nvidia/cu13/bin/cuobjdump')))"; then
  echo "setup: installing cuobjdump (PyPI nvidia-cuda-cuobjdump)"
  python3 -m pip install -q --disable-pip-version-check nvidia-cuda-cuobjdump==13.2.86
fi
echo "setup: dependencies ready"
