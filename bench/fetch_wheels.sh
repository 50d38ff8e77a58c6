#!/bin/sh
# Fetch the wheels of bench/gpu-wheels.txt into .whl/ (replacing what is there: two versions of one
# package would stop the install), for the GPU machine: CPython 3.12 on x86-64 Linux. It only downloads
# from PyPI. bench/gpu_check.py installs them on the GPU machine; the device call carries .whl/.
#   sh bench/fetch_wheels.sh            (or: make gpu-wheels)
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
rm -rf .whl
mkdir .whl
$PYTHON -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r bench/gpu-wheels.txt
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/"
