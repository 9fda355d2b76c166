# Shared by the scripts that build an image from a Debian root file system, offline:
# scripts/build-triton-test-image.sh and scripts/build-analyzer-base-image.sh.
# Source it after setting TAG, SUITE, VARIANT, INCLUDE, BUILD_SCRIPT (the name in log
# lines) and BUILD_NAME (its lock and work-directory prefix under the cache). It checks the
# Docker engine, exits 0 when TAG exists (FORCE=1 rebuilds), takes the build lock, finds
# this machine's Debian mirror, and leaves the root file system in $ROOTFS (debootstrap,
# or the cached tarball) inside $WORK, which is removed on exit. Then `import_rootfs`
# (below) turns the root file system into the image.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/analyzer-widgets/triton-image"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-$VARIANT-$ARCH-$(echo "$INCLUDE" | sha256sum | cut -c1-10).tar"

log() { echo "$BUILD_SCRIPT: $*"; }
die() { echo "$BUILD_SCRIPT: ERROR: $*" >&2; exit 1; }
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
# One build of each kind at a time (parallel test workers, two make runs): the others wait,
# then find the image built.
exec 9>"$CACHE/$BUILD_NAME.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/$BUILD_NAME.lock; waiting for it (up to 15 min)"
    flock -w 900 9 || die "timed out waiting for $CACHE/$BUILD_NAME.lock"
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

WORK="$(mktemp -d "$CACHE/$BUILD_NAME.XXXXXX")"
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

# import_rootfs MESSAGE [--change INSTRUCTION ...]: import $ROOTFS as $TAG with PATH, LANG
# and WORKDIR set (more Dockerfile instructions as --change arguments), drop the image a
# FORCE=1 rebuild replaced (left untagged) unless a container still uses it, and set
# $SIZE to the new image's size.
import_rootfs() {
    local message="$1"
    shift
    local t old_id
    t=$(now)
    old_id="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
    log "import: tar -C ROOTFS -c . | docker import - $TAG"
    tar -C "$ROOTFS" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'WORKDIR /' \
        "$@" \
        --message "$message" \
        - "$TAG" >/dev/null
    log "import: took $(since "$t") s"
    if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 && log "import: removed the image it replaces (${old_id:0:19})" || true
    fi
    SIZE="$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}
