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

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/analyzer-widgets/triton-image"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-$VARIANT-$ARCH-$(echo "$INCLUDE" | sha256sum | cut -c1-10).tar"

log() { echo "build-analyzer-base-image: $*"; }
die() { echo "build-analyzer-base-image: ERROR: $*" >&2; exit 1; }
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
# one build at a time per tag (a separate lock from the Triton image's build)
exec 9>"$CACHE/base-build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/base-build.lock; waiting for it (up to 15 min)"
    flock -w 900 9 || die "timed out waiting for $CACHE/base-build.lock"
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

WORK="$(mktemp -d "$CACHE/base-build.XXXXXX")"
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
T=$(now)
OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
log "import: tar -C ROOTFS -c . | docker import - $TAG"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /' \
    --change 'CMD ["python3"]' \
    --message "analyzer-widgets base image: debootstrap $SUITE $VARIANT + $INCLUDE" \
    - "$TAG" >/dev/null
log "import: took $(since "$T") s"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 && log "import: removed the image it replaces (${OLD_ID:0:19})" || true
fi

SIZE="$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "built $TAG ($SIZE) in $(since "$T_ALL") s"
