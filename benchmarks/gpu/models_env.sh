#!/usr/bin/env bash
# The models' environment on the GPU host, sourced by setup.sh and setup_ma.sh:
#   source benchmarks/gpu/models_env.sh NUMPY   (a numpy 1.26 wheel, or a pack-site.sh .tar.xz)
# /tmp/models-env is this interpreter with numpy 1.26 first on its path and the host's
# site-packages (torch) after it: the embedded Python backend returns empty outputs with
# numpy 2 (DESIGN.md). Exports ANALYZER_WIDGETS_BACKEND_PYTHON, which the local launch
# mode uses as the models' Python wherever --backend-python is not given.
numpy_source=$1
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
case "$numpy_source" in
    *.whl) python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target "$site" "$numpy_source" ;;
    *) tar -xJf "$numpy_source" -C "$site" ;;
esac
echo "$host_site" > "$site/zz-host-site-packages.pth"
export ANALYZER_WIDGETS_BACKEND_PYTHON=$env_dir/bin/python3
echo "models' Python: $ANALYZER_WIDGETS_BACKEND_PYTHON: $("$ANALYZER_WIDGETS_BACKEND_PYTHON" -c 'import numpy, torch; print("numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
