#!/usr/bin/env bash
# Build the local CPU Triton image that the `docker`-marked tests run, offline (no registry).
#
#   scripts/build-triton-test-image.sh [TAG]      (default: analyzer-widgets/triton-cpu-test:2.51)
#
# Recipe (DESIGN.md, "Docker launch mode (verified)"):
#   1. debootstrap --variant=minbase --include=python3,python3-numpy,libpython3.11 bookworm ROOTFS MIRROR
#      (MIRROR: the Debian main URI of this machine's own apt sources; Debian's numpy there is
#      1.24, which the Python backend needs: with numpy 2 it answers with empty outputs);
#      cached as a tarball under ${XDG_CACHE_HOME:-~/.cache}/analyzer-widgets/triton-image/;
#   2. the nvidia-pytriton 0.7.0 wheel (Triton 2.51) unpacked into ROOTFS/opt/pytriton with
#      `pip install --no-deps --target` (the wheel is cached next to the rootfs tarball);
#   3. ROOTFS/opt/tritonserver/backends/python: the wheel's Python backend + the Python 3.11 stub;
#   4. /usr/local/bin/tritonserver: a wrapper that sets LD_LIBRARY_PATH (the wheel's
#      nvidia_pytriton.libs and the rootfs's libpython dir) and passes --backend-directory;
#   5. tar -C ROOTFS -c . | docker import - TAG.
#
# The image has NO entrypoint, like the NGC images as far as the command goes: run it as
#   docker run ... TAG tritonserver --model-repository=/models ...
# (CMD is ["tritonserver"], PATH includes /usr/local/bin, ports 8000-8002 are EXPOSEd).
#
# Skips everything when the image TAG already exists (FORCE=1 rebuilds it). Needs root
# (debootstrap, and a rootfs with device nodes and root-owned files) and a running Docker
# engine (scripts/start-dockerd.sh). Environment knobs:
#   DEBIAN_MIRROR      override the mirror found in the apt sources
#   PYTRITON_WHEEL     use this nvidia-pytriton wheel file instead of downloading one
#   PYTHON             the Python whose pip downloads/unpacks the wheel (default: .venv's, else python3)
#   FORCE=1            rebuild even if TAG exists
#   KEEP_ROOTFS_CACHE=0  do not keep the debootstrap tarball
set -euo pipefail

TAG="${1:-analyzer-widgets/triton-cpu-test:2.51}"
SUITE=bookworm
VARIANT=minbase
INCLUDE=python3,python3-numpy,libpython3.11
PY_VERSION=3.11          # the stub to use; must match bookworm's python3
PYTRITON_VERSION=0.7.0   # ships tritonserver 2.51

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_SCRIPT=build-triton-test-image
BUILD_NAME=build
# shellcheck source=scripts/_debootstrap-image.sh
source "$(dirname "$0")/_debootstrap-image.sh"

LIBPYTHON="$(cd "$ROOTFS" && find usr/lib lib -name "libpython$PY_VERSION.so.1.0" 2>/dev/null | head -n 1)"
[ -n "$LIBPYTHON" ] || die "no libpython$PY_VERSION.so.1.0 in the rootfs (is $SUITE's python3 still $PY_VERSION?)"
LIBPYTHON_DIR="/$(dirname "$LIBPYTHON")"
NUMPY_VERSION="$(chroot "$ROOTFS" /usr/bin/python3 -c 'import numpy; print(numpy.__version__)')" \
    || die "numpy does not import in the rootfs"
case "$NUMPY_VERSION" in 1.*) ;; *) die "the rootfs has numpy $NUMPY_VERSION; the Python backend needs numpy 1.x" ;; esac
log "rootfs: python3 $(chroot "$ROOTFS" /usr/bin/python3 -c 'import platform; print(platform.python_version())'), numpy $NUMPY_VERSION, libpython in $LIBPYTHON_DIR"

# ---- 2. the nvidia-pytriton wheel ------------------------------------------------------------
T=$(now)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
WHEEL="${PYTRITON_WHEEL:-}"
if [ -z "$WHEEL" ]; then
    WHEEL="$(ls "$CACHE"/wheels/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
fi
if [ -z "$WHEEL" ]; then
    log "wheel: pip download nvidia-pytriton==$PYTRITON_VERSION --no-deps"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform manylinux_2_35_x86_64 --python-version "$PY_VERSION" \
        -d "$CACHE/wheels" "nvidia-pytriton==$PYTRITON_VERSION" 2>&1 | grep -v "^WARNING: Location 'file:" || true
    WHEEL="$(ls "$CACHE"/wheels/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
fi
if [ -n "$WHEEL" ]; then
    [ -s "$WHEEL" ] || die "no wheel at $WHEEL"
    log "wheel: pip install --no-deps --target /opt/pytriton $(basename "$WHEEL")"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --no-compile \
        --target "$ROOTFS/opt/pytriton" "$WHEEL" 2>&1 | grep -v "^WARNING: Location 'file:" || true
else
    # offline fallback: the copy installed in the project's virtualenv
    SITE="$("$PYTHON" -c 'import pytriton, os; print(os.path.dirname(os.path.dirname(pytriton.__file__)))' 2>/dev/null || true)"
    HAVE="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("nvidia-pytriton"))' 2>/dev/null || true)"
    [ -n "$SITE" ] && [ "$HAVE" = "$PYTRITON_VERSION" ] \
        || die "could not download nvidia-pytriton==$PYTRITON_VERSION and $PYTHON has no copy of it (has: ${HAVE:-none}); set PYTRITON_WHEEL"
    log "wheel: download failed; copying nvidia-pytriton $HAVE from $SITE"
    mkdir -p "$ROOTFS/opt/pytriton"
    cp -a "$SITE/pytriton" "$SITE/nvidia_pytriton.libs" "$ROOTFS/opt/pytriton/"
fi
PT="/opt/pytriton"
TS="$PT/pytriton/tritonserver"
[ -x "$ROOTFS$TS/bin/tritonserver" ] || die "no tritonserver binary in the unpacked wheel ($ROOTFS$TS/bin)"
[ -d "$ROOTFS$PT/nvidia_pytriton.libs" ] || die "no nvidia_pytriton.libs in the unpacked wheel"
find "$ROOTFS$PT" -name __pycache__ -type d -prune -exec rm -rf {} +
log "wheel: unpacked in $(since "$T") s"

# ---- 3. the backend directory: Python backend + the 3.11 stub --------------------------------
STUB="$ROOTFS$TS/python_backend_stubs/$PY_VERSION/triton_python_backend_stub"
[ -x "$STUB" ] || die "the wheel has no Python $PY_VERSION stub ($STUB)"
BACKENDS=/opt/tritonserver/backends
mkdir -p "$ROOTFS$BACKENDS/python"
cp -a "$ROOTFS$TS/backends/python/." "$ROOTFS$BACKENDS/python/"
cp -a "$STUB" "$ROOTFS$BACKENDS/python/triton_python_backend_stub"
if [ -d "$ROOTFS$TS/caches" ]; then
    mkdir -p "$ROOTFS/opt/tritonserver"
    cp -a "$ROOTFS$TS/caches" "$ROOTFS/opt/tritonserver/caches"
fi

# ---- 4. the tritonserver wrapper -------------------------------------------------------------
LIBS="$LIBPYTHON_DIR:$PT/nvidia_pytriton.libs"
mkdir -p "$ROOTFS/usr/local/bin"
cat >"$ROOTFS/usr/local/bin/tritonserver" <<EOF
#!/bin/sh
# Triton 2.51 server from the nvidia-pytriton $PYTRITON_VERSION wheel (built by
# analyzer-widgets scripts/build-triton-test-image.sh). The stub embeds this rootfs's
# Python $PY_VERSION (libpython in $LIBPYTHON_DIR) with Debian's numpy $NUMPY_VERSION.
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec $TS/bin/tritonserver --backend-directory=$BACKENDS --cache-directory=/opt/tritonserver/caches "\$@"
EOF
chmod 0755 "$ROOTFS/usr/local/bin/tritonserver"

# nothing unresolved for the server, the backend or the stub
missing="$(chroot "$ROOTFS" /usr/bin/env LD_LIBRARY_PATH="$LIBS" /bin/sh -c \
    "ldd $TS/bin/tritonserver $BACKENDS/python/libtriton_python.so $BACKENDS/python/triton_python_backend_stub" \
    | grep 'not found' || true)"
[ -z "$missing" ] || die "shared libraries missing in the image:
$missing"
# (tritonserver --help exits 1 after printing its usage: look at what it printed)
usage="$(chroot "$ROOTFS" /usr/local/bin/tritonserver --help 2>&1 || true)"
printf '%s\n' "$usage" | grep -q -e '--model-repository' \
    || die "'tritonserver --help' does not run in the rootfs: $(printf '%s\n' "$usage" | tail -n 5)"

# ---- 5. docker import -----------------------------------------------------------------------
import_rootfs "analyzer-widgets CPU Triton test image: debootstrap $SUITE $VARIANT + nvidia-pytriton $PYTRITON_VERSION" \
    --change 'EXPOSE 8000 8001 8002' --change 'CMD ["tritonserver"]'
log "built $TAG ($SIZE) in $(since "$T_ALL") s; run it as: docker run --rm -p 127.0.0.1::8000 -v REPO:/models:ro $TAG tritonserver --model-repository=/models"
