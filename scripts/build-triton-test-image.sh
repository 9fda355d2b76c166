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
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/analyzer-widgets/triton-image"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-$VARIANT-$ARCH-$(echo "$INCLUDE" | sha256sum | cut -c1-10).tar"

log() { echo "build-triton-test-image: $*"; }
die() { echo "build-triton-test-image: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

T_ALL=$(now)

command -v docker >/dev/null 2>&1 || die "no docker client; run scripts/install-system-deps.sh"
docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 \
    || die "no Docker engine answers; run scripts/start-dockerd.sh first"

image_exists() { docker image inspect "$TAG" >/dev/null 2>&1; }

if image_exists && [ "${FORCE:-0}" != "1" ]; then
    log "image $TAG already exists ($(docker image inspect -f '{{.Id}}' "$TAG" | cut -c1-19)); skipping the build (FORCE=1 rebuilds)"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the image needs root (debootstrap, device nodes, root-owned files)"
command -v debootstrap >/dev/null 2>&1 || die "no debootstrap; run scripts/install-system-deps.sh"

mkdir -p "$CACHE"
# One build at a time per cache (parallel test workers, two make runs): the others wait, then
# find the image built.
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/build.lock; waiting for it (up to 15 min)"
    flock -w 900 9 || die "timed out waiting for $CACHE/build.lock"
    if image_exists && [ "${FORCE:-0}" != "1" ]; then
        log "image $TAG was built meanwhile; nothing to do"
        exit 0
    fi
fi

# ---- the Debian mirror of this machine's apt sources ----------------------------------------
# deb822 stanzas (/etc/apt/sources.list.d/*.sources) and one-line entries (*.list,
# /etc/apt/sources.list): the first enabled `deb` entry with suite $SUITE and component main;
# else the first `deb` entry with component main whose URI ends in /debian; else deb.debian.org.
find_mirror() {
    local files=()
    [ -r /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    local f
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    awk -v suite="$SUITE" '
        function consider(types, uris, suites, comps, enabled,   n, u, i) {
            if (enabled ~ /^[Nn]o$/ || (" " types " ") !~ / deb / || (" " comps " ") !~ / main /) return
            n = split(uris, u, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                if (u[i] == "") continue
                if ((" " suites " ") ~ (" " suite " ") && best == "") best = u[i]
                if (u[i] ~ /\/debian\/?$/ && fallback == "") fallback = u[i]
            }
        }
        function flush() {
            if (in_stanza) consider(s_types, s_uris, s_suites, s_comps, s_enabled)
            in_stanza = 0; s_types = s_uris = s_suites = s_comps = s_enabled = ""
        }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 {
            if ($0 ~ /^[ \t]*#/) next
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[A-Za-z-]+:/) {
                key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", val); in_stanza = 1
                if (key == "types") s_types = val
                else if (key == "uris") s_uris = val
                else if (key == "suites") s_suites = val
                else if (key == "components") s_comps = val
                else if (key == "enabled") s_enabled = val
            }
            next
        }
        {
            sub(/#.*/, "")
            if ($1 != "deb") next
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if (i + 1 > NF) next
            comps = ""
            for (j = i + 2; j <= NF; j++) comps = comps " " $j
            consider("deb", $i, $(i + 1), comps, "")
        }
        END { flush(); if (best != "") print best; else if (fallback != "") print fallback }
    ' "${files[@]}"
}

MIRROR="${DEBIAN_MIRROR:-$(find_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
    # debootstrap mounts /proc and /sys in the target while it runs: never rm -rf through a
    # mount that a failed run left behind
    if [ -d "$ROOTFS" ]; then
        awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# ---- 1. the Debian root file system ---------------------------------------------------------
T=$(now)
if [ -s "$ROOTFS_TAR" ]; then
    log "rootfs: unpacking the cached $ROOTFS_TAR"
    mkdir -p "$ROOTFS"
    tar -C "$ROOTFS" --numeric-owner -xpf "$ROOTFS_TAR"
    log "rootfs: unpacked in $(since "$T") s"
else
    log "rootfs: debootstrap --variant=$VARIANT --include=$INCLUDE $SUITE $ROOTFS $MIRROR"
    debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 40 "$WORK/debootstrap.log" >&2
        [ -r "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (mirror $MIRROR; set DEBIAN_MIRROR to use another)"
    }
    log "rootfs: debootstrap took $(since "$T") s"
    # what the image does not need: downloaded .debs, package lists, docs
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* 2>/dev/null || true
    if [ "${KEEP_ROOTFS_CACHE:-1}" != "0" ]; then
        T2=$(now)
        tar -C "$ROOTFS" --numeric-owner -cf "$ROOTFS_TAR.tmp$$" .
        mv -f "$ROOTFS_TAR.tmp$$" "$ROOTFS_TAR"
        log "rootfs: cached as $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1), $(since "$T2") s)"
    fi
fi
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
T=$(now)
OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
log "import: tar -C ROOTFS -c . | docker import - $TAG"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'EXPOSE 8000 8001 8002' \
    --change 'WORKDIR /' \
    --change 'CMD ["tritonserver"]' \
    --message "analyzer-widgets CPU Triton test image: debootstrap $SUITE $VARIANT + nvidia-pytriton $PYTRITON_VERSION" \
    - "$TAG" >/dev/null
log "import: took $(since "$T") s"
# a FORCE=1 rebuild: drop the image it replaced (left untagged), unless a container still uses it
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 && log "import: removed the image it replaces (${OLD_ID:0:19})" || true
fi

SIZE="$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "built $TAG ($SIZE) in $(since "$T_ALL") s; run it as: docker run --rm -p 127.0.0.1::8000 -v REPO:/models:ro $TAG tritonserver --model-repository=/models"
