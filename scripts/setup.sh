#!/usr/bin/env bash
# Installs the Debian packages Agnesi needs (only those missing), builds it, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build libeigen3-dev libboost-dev libboost-program-options-dev
          libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev clang clang-format
          python3-sympy libginac-dev libopenblas-dev libopenblas-openmp-dev libomp-dev
          python3-numpy python3-scipy python3-torch)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
./build/bin/agnesi_demo
./build/bin/agnesi_example_mlp   # a 2-layer MLP trained from its math: grad, compile, updates
