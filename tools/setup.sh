#!/usr/bin/env bash
# Installs gpt2-gen's dependencies from Debian packages and PyPI. Idempotent: a second run
# installs nothing new. Usage: tools/setup.sh   (as root, or with sudo available)
set -euo pipefail

debian_packages=(cmake g++ make libcli11-dev nlohmann-json3-dev libgtest-dev clang libclang-rt-dev libomp-dev
                 libhwy-dev libdnnl-dev)  # the last two: the fast CPU path (optional, see CMakeLists.txt)
python_packages=(numpy safetensors tokenizers tiktoken matplotlib huggingface_hub)

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
# With a CUDA toolkit (nvcc on PATH): clang-19, which compiles the kernels against CUDA 12 in
# tools/cuda12_check.sh (without its recommends: llvm-19-dev and the rest are not needed), and
# cuobjdump for tests/test_cuda_binary.py where the toolkit has none: NVIDIA's from PyPI (0.4 MB,
# in site-packages/nvidia/cu13/bin, where CMake looks).
if command -v nvcc >/dev/null; then
  if ! command -v clang++-19 >/dev/null; then
    echo "setup: installing Debian package clang-19"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-19 >/dev/null
  fi
  purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  if ! command -v cuobjdump >/dev/null && [ ! -x "$(dirname "$(command -v nvcc)")/cuobjdump" ] &&
     [ ! -x "$purelib/nvidia/cu13/bin/cuobjdump" ]; then
    echo "setup: installing cuobjdump (PyPI nvidia-cuda-cuobjdump)"
    python3 -m pip install -q --disable-pip-version-check nvidia-cuda-cuobjdump==13.2.86
  fi
fi
echo "setup: dependencies ready"
