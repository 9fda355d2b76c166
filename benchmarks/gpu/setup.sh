#!/usr/bin/env bash
# Make this checkout runnable on the GPU host (no network, Python 3.12 with torch and
# numpy 2), from the offline wheels that ../shared/gpu/prepare-offline-wheels.sh gathered.
# Usage (on the GPU host, in the repository root):
#   source benchmarks/gpu/setup.sh .gpuwheels
# Afterwards: PYTHONPATH holds the embedded Triton, tritonclient and this package, and
# ANALYZER_WIDGETS_BACKEND_PYTHON names a models' environment with numpy 1.26 (the
# embedded Python backend returns empty outputs with numpy 2) that still sees the host's
# torch. See docs/gpu-host.md.
wheels=${1:-.gpuwheels}
here=$(pwd)
mkdir -p /tmp/tr /tmp/site
tar -xJf "$wheels"/tritonserver-min.tar.xz -C /tmp/tr
shopt -s nullglob  # perf_analyzer, the panel's wheels (ui/) and tritonclient.http's (http/) are optional
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site \
    "$wheels"/tritonclient-*.whl "$wheels"/python_rapidjson-*.whl "$wheels"/perf_analyzer-*.whl "$wheels"/ui/*.whl \
    "$wheels"/http/*.whl
shopt -u nullglob
source "$(dirname "${BASH_SOURCE[0]}")/models_env.sh" "$(ls "$wheels"/numpy-1.26*.whl)"
export PYTHONPATH=/tmp/tr:/tmp/site:$here${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site/bin:$PATH
