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
# The models' environment: this interpreter, numpy 1.26 first on its path, the host's
# site-packages (torch) after it.
host_python=$(python3 -c 'import sys; print(sys.executable)')
host_site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
base_home=$(python3 -c 'import sys, os; print(os.path.dirname(os.path.realpath(sys.executable)))')
version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
env_dir=/tmp/models-env
site="$env_dir/lib/python$version/site-packages"
mkdir -p "$env_dir/bin" "$site"
ln -sf "$(readlink -f "$host_python")" "$env_dir/bin/python3"
ln -sf python3 "$env_dir/bin/python"
printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' "$base_home" "$version" > "$env_dir/pyvenv.cfg"
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target "$site" "$wheels"/numpy-1.26*.whl
echo "$host_site" > "$site/zz-host-site-packages.pth"
export PYTHONPATH=/tmp/tr:/tmp/site:$here${PYTHONPATH:+:$PYTHONPATH}
export ANALYZER_WIDGETS_BACKEND_PYTHON=$env_dir/bin/python3
export PATH=/tmp/site/bin:$PATH
echo "models' Python: $ANALYZER_WIDGETS_BACKEND_PYTHON: $("$ANALYZER_WIDGETS_BACKEND_PYTHON" -c 'import numpy, torch; print("numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
