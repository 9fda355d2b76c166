#!/usr/bin/env bash
# Make this checkout and Triton Model Analyzer 1.58 runnable on the GPU host (no network,
# Python 3.12 with torch and numpy 2), for benchmarks/plan_vs_model_analyzer.py, from a
# folder that fits one device call's carry (docs/gpu-host.md, "Model Analyzer"):
#   tritonserver-min.tar.xz   the embedded Triton server (from prepare-offline-wheels.sh)
#   numpy-1.26.4.tar.xz       numpy 1.26 for the models' environment (pack-site.sh)
#   ma-site.tar.xz            Model Analyzer, perf_analyzer, tritonclient and what the host
#                             lacks of their dependencies (pack-site.sh)
#   ma-protobuf.tar.xz        protobuf 6 for Model Analyzer's process alone, unpacked to
#                             /tmp/ma-extra (Model Analyzer 1.58 fails to import with
#                             protobuf 7: FieldDescriptor.label is gone); give the benchmark
#                             --ma-pythonpath /tmp/ma-extra
# Usage (on the GPU host, in the repository root):
#   source benchmarks/gpu/setup_ma.sh .gpuma
# Afterwards, as after setup.sh: PYTHONPATH holds the embedded Triton, the packed packages
# and this package; ANALYZER_WIDGETS_BACKEND_PYTHON names a models' environment with numpy
# 1.26 that still sees the host's torch; /tmp/site/bin (model-analyzer) is on PATH.
pack=${1:-.gpuma}
here=$(pwd)
mkdir -p /tmp/tr /tmp/site /tmp/ma-extra
tar -xJf "$pack"/tritonserver-min.tar.xz -C /tmp/tr
tar -xJf "$pack"/ma-site.tar.xz -C /tmp/site
tar -xJf "$pack"/ma-protobuf.tar.xz -C /tmp/ma-extra
source "$(dirname "${BASH_SOURCE[0]}")/models_env.sh" "$(ls "$pack"/numpy-1.26*.tar.xz)"
export PYTHONPATH=/tmp/tr:/tmp/site:$here${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site/bin:$PATH
# What Model Analyzer will find: its version, whether numba sees CUDA (it asks before
# using GPUs), whether DCGM is installed (else the benchmark answers its GPU lookup from NVML)
host_protobuf=$(python3 -c 'import google.protobuf as p; print(p.__version__)' 2>&1 | tail -1)
HOST_PROTOBUF=$host_protobuf PYTHONPATH=/tmp/ma-extra:$PYTHONPATH python3 - <<'EOF'
import importlib.metadata as m, os, pathlib, platform
import google.protobuf
import model_analyzer.entrypoint  # noqa: F401 - fails here if a package it needs is missing
try:
    import numba.cuda
    cuda = numba.cuda.is_available()
except Exception as e:  # noqa: BLE001
    cuda = f"no ({type(e).__name__}: {e})"
dcgm = [p for p in (f"/usr/lib/{platform.machine()}-linux-gnu/libdcgm.so.4", "/usr/lib64/libdcgm.so.4")
        if pathlib.Path(p).is_file()]
print(f"Model Analyzer {m.version('triton-model-analyzer')}, perf_analyzer {m.version('perf_analyzer')}, "
      f"tritonclient {m.version('tritonclient')}, protobuf {google.protobuf.__version__} (the host's: "
      f"{os.environ['HOST_PROTOBUF']}); numba.cuda available: {cuda}; libdcgm.so.4: {dcgm or 'none'}")
EOF
