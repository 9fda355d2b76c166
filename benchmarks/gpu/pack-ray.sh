#!/usr/bin/env bash
# Ray's core for the GPU host (CPython 3.12, no network), cut to what --ray needs, as one xz
# tree: Ray 2.60's wheel is 79 MB, more than a device call may carry (64 MiB), and most of it
# is what a sweep does not use (the Java jars, RLlib, Serve, Train, Tune, Data, the LLM
# libraries, the dashboard's source maps). Measured 2026-12-03: 28.8 MB packed.
# Usage (here, where pip reaches PyPI):  bash benchmarks/gpu/pack-ray.sh .gpuray/ray-core.tar.xz
# On the GPU host: mkdir -p /tmp/ray && tar -xJf .gpuray/ray-core.tar.xz -C /tmp/ray
#                  export PYTHONPATH=/tmp/ray:$PYTHONPATH PATH=/tmp/ray/bin:$PATH
# The host has Ray's other dependencies (click, filelock, msgpack, protobuf, pyyaml, requests,
# aiohttp, grpcio: the device tool's KINDS.md); jsonschema and its own travel here. Start the
# cluster without the dashboard (LocalRayCluster(dashboard=False)): that needs Ray's [default].
# docs/gpu-host.md says how the call that uses it runs.
set -euo pipefail
out=${1:?usage: pack-ray.sh OUT.tar.xz}
version=${RAY_VERSION:-2.60.0}  # the version of the [ray] extra's driver: a cluster runs one version
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip install -q --no-deps --no-compile --target "$tmp/site" \
    --python-version 3.12 --implementation cp --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "ray==$version" jsonschema jsonschema-specifications referencing rpds-py
rm -rf "$tmp"/site/ray/{jars,rllib,llm,data,serve,train,tune}
find "$tmp/site/ray/dashboard" -name '*.map' -delete
for f in "$tmp"/site/bin/*; do
  if head -c 2 "$f" | grep -q '#!'; then sed -i '1s|^#!.*python.*|#!/usr/bin/env python3|' "$f"; fi
done
find "$tmp/site" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$(dirname "$out")"
tar -C "$tmp/site" -cJf "$out" .
ls -la "$out"
