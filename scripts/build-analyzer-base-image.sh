#!/usr/bin/env bash
# Build a local Python 3.11 base image for the analyzer's own Dockerfile, offline (no registry).
#
#   scripts/build-analyzer-base-image.sh [TAG]      (default: analyzer-widgets/base-py311:bookworm)
#
# Recipe:
#   1. debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,libpython3.11,ca-certificates
#      bookworm ROOTFS MIRROR (MIRROR: found in this machine's apt sources, like
#      scripts/build-triton-test-image.sh does); cached as a tarball under
#      ${XDG_CACHE_HOME:-~/.cache}/analyzer-widgets/triton-image/ next to that script's;
#   2. tar -C ROOTFS -c . | docker import - TAG.
#
# The image has python3 3.11 with pip and venv (Debian's: PEP 668 marks the system Python
# externally managed, so install into a venv, as the Dockerfile does in /opt/venv) and the
# shared libpython3.11 that the embedded Triton's Python backend stub needs. Use it as
#   docker build --build-arg BASE=analyzer-widgets/base-py311:bookworm -t analyzer-widgets .
#
# Skips everything when TAG already exists (FORCE=1 rebuilds it). Needs root and a running
# Docker engine. Environment knobs: DEBIAN_MIRROR, FORCE=1, KEEP_ROOTFS_CACHE=0.
set -euo pipefail

TAG="${1:-analyzer-widgets/base-py311:bookworm}"
SUITE=bookworm
VARIANT=minbase
INCLUDE=python3,python3-pip,python3-venv,libpython3.11,ca-certificates
PY_VERSION=3.11

BUILD_SCRIPT=build-analyzer-base-image
BUILD_NAME=base-build
# shellcheck source=scripts/_debootstrap-image.sh
source "$(dirname "$0")/_debootstrap-image.sh"

# ---- checks: python 3.11, venv with pip, a shared libpython ---------------------------------
VER="$(chroot "$ROOTFS" /usr/bin/python3 -c 'import platform; print(platform.python_version())')" \
    || die "python3 does not run in the rootfs"
case "$VER" in "$PY_VERSION".*) ;; *) die "the rootfs has python3 $VER, not $PY_VERSION" ;; esac
LIBPYTHON="$(cd "$ROOTFS" && find usr/lib lib -name "libpython$PY_VERSION.so.1.0" 2>/dev/null | head -n 1)"
[ -n "$LIBPYTHON" ] || die "no libpython$PY_VERSION.so.1.0 in the rootfs"
# sysconfig's LDLIBRARY is libpython3.11.so, which only libpython3.11-dev (headers, libc6-dev,
# ...) ships; analyzer-widgets checks that it exists: the link alone is enough
SOLINK="$(dirname "$LIBPYTHON")/libpython$PY_VERSION.so"
[ -e "$ROOTFS/$SOLINK" ] || ln -s "libpython$PY_VERSION.so.1.0" "$ROOTFS/$SOLINK"
chroot "$ROOTFS" /usr/bin/python3 -c 'import sysconfig, pathlib, sys
p = pathlib.Path(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY"))
sys.exit(0 if p.exists() and sysconfig.get_config_var("Py_ENABLE_SHARED") else f"no shared libpython at {p}")' \
    || die "sysconfig does not point at a shared libpython in the rootfs"
chroot "$ROOTFS" /usr/bin/python3 -c 'import ensurepip, venv' \
    || die "python3-venv (ensurepip) is missing in the rootfs"
chroot "$ROOTFS" /usr/bin/python3 -m pip --version >/dev/null || die "pip does not run in the rootfs"
log "rootfs: python3 $VER with pip and venv, libpython in /$(dirname "$LIBPYTHON")"

# ---- 2. docker import -----------------------------------------------------------------------
import_rootfs "analyzer-widgets base image: debootstrap $SUITE $VARIANT + $INCLUDE" \
    --change 'CMD ["python3"]'
log "built $TAG ($SIZE) in $(since "$T_ALL") s"
