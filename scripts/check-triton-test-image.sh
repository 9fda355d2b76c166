#!/usr/bin/env bash
# Check that the local CPU Triton image really serves a Python-backend model (exit 0 if so).
#
#   scripts/check-triton-test-image.sh [TAG]     (default: analyzer-widgets/triton-cpu-test:2.51)
#
# Starts a container of TAG with the example model repository mounted read-only at /models and
# the three ports published to random 127.0.0.1 ports, the way the docker launch mode runs it
# (`tritonserver --model-repository=/models --model-control-mode=explicit`, shm 1g), waits for
# /v2/health/ready, loads mlp_numpy over HTTP, runs one inference with tritonclient.http
# (INPUT0 FP32 [1,256] -> OUTPUT0 [1,64]), reads /metrics, prints the server's log, then stops
# and removes the container (also on failure or Ctrl-C).
#
# Needs a running Docker engine (scripts/start-dockerd.sh), the image
# (scripts/build-triton-test-image.sh) and a Python with tritonclient[http] and numpy
# ($PYTHON, default: the project's .venv). CHECK_TIMEOUT_S (default 60) bounds start-up.
set -euo pipefail

TAG="${1:-analyzer-widgets/triton-cpu-test:2.51}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODELS="$REPO_ROOT/analyzer_widgets/examples/model_repository"
MODEL=mlp_numpy
TIMEOUT_S="${CHECK_TIMEOUT_S:-60}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

log() { echo "check-triton-test-image: $*"; }
fail() { echo "check-triton-test-image: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || fail "no Docker engine answers (scripts/start-dockerd.sh)"
docker image inspect "$TAG" >/dev/null 2>&1 || fail "no image $TAG (scripts/build-triton-test-image.sh $TAG)"
[ -f "$MODELS/$MODEL/config.pbtxt" ] || fail "no $MODEL in $MODELS"
"$PYTHON" -c 'import tritonclient.http, numpy' 2>/dev/null || fail "$PYTHON lacks tritonclient[http] or numpy"

NAME="analyzer-widgets-check-$$"
CID=""
cleanup() {
    if [ -n "$CID" ]; then
        docker rm -f "$CID" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_logs() {
    log "---- container log (tritonserver) ----"
    docker logs "$CID" 2>&1 | sed 's/^/    /' || true
    log "--------------------------------------"
}

T_START=$(now)
CID="$(docker run -d --rm --name "$NAME" --label analyzer-widgets.check=true --shm-size=1g \
    -p 127.0.0.1::8000 -p 127.0.0.1::8001 -p 127.0.0.1::8002 \
    -v "$MODELS:/models:ro" \
    "$TAG" tritonserver --model-repository=/models --model-control-mode=explicit \
    --log-verbose=0 --exit-timeout-secs=5)"
T_RUN=$(since "$T_START")
port() { docker port "$CID" "$1/tcp" | head -n 1 | sed 's/.*://'; }
HTTP="127.0.0.1:$(port 8000)"
GRPC="127.0.0.1:$(port 8001)"
METRICS="127.0.0.1:$(port 8002)"
log "container ${CID:0:12} ($NAME) of $TAG: http $HTTP, grpc $GRPC, metrics $METRICS (docker run took ${T_RUN} s)"

deadline=$(( $(date +%s) + TIMEOUT_S ))
until curl -sf -o /dev/null "http://$HTTP/v2/health/ready"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$CID" 2>/dev/null || echo false)" != "true" ]; then
        show_logs; fail "the container stopped during start-up"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        show_logs; fail "not ready after ${TIMEOUT_S} s"
    fi
    sleep 0.05
done
T_READY=$(since "$T_START")
log "server ready ${T_READY} s after docker run"

T=$(now)
code="$(curl -s -o /tmp/check-triton-load.$$ -w '%{http_code}' -X POST "http://$HTTP/v2/repository/models/$MODEL/load")"
body="$(cat /tmp/check-triton-load.$$ 2>/dev/null || true)"; rm -f /tmp/check-triton-load.$$
[ "$code" = 200 ] || { show_logs; fail "loading $MODEL: HTTP $code $body"; }
curl -sf -o /dev/null "http://$HTTP/v2/models/$MODEL/ready" || { show_logs; fail "$MODEL is not ready after its load"; }
log "loaded $MODEL in $(since "$T") s"

T=$(now)
"$PYTHON" - "$HTTP" "$MODEL" <<'EOF' || { show_logs; fail "inference"; }
import sys

import numpy as np
import tritonclient.http as httpclient

url, model = sys.argv[1], sys.argv[2]
client = httpclient.InferenceServerClient(url=url)
x = np.random.default_rng(1).standard_normal((1, 256), dtype=np.float32)
inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
result = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0")])
y = result.as_numpy("OUTPUT0")
if y is None or y.size == 0:
    sys.exit(f"OUTPUT0 is empty ({y!r}): the Python backend's numpy is probably 2.x")
if y.shape != (1, 64) or y.dtype != np.float32:
    sys.exit(f"OUTPUT0 has shape {y.shape} dtype {y.dtype}, expected (1, 64) float32")
if not np.all(np.isfinite(y)):
    sys.exit("OUTPUT0 has non-finite values")
# the model's own arithmetic (fixed weights from default_rng(0)), for information
rng = np.random.default_rng(0)
w1 = rng.standard_normal((256, 512), dtype=np.float32) / 16.0
w2 = rng.standard_normal((512, 64), dtype=np.float32) / 22.6
ref = np.maximum(x @ w1, 0.0) @ w2
same = np.allclose(y, ref, rtol=1e-4, atol=1e-4)
print(f"check-triton-test-image: OUTPUT0 shape {y.shape} {y.dtype}, first values {[round(float(v), 4) for v in y[0, :3]]}, "
      f"{'matches' if same else 'DIFFERS FROM'} a host-side numpy reference (max |diff| {np.max(np.abs(y - ref)):.2e})")
EOF
log "inference in $(since "$T") s"

curl -sf "http://$METRICS/metrics" | grep -q '^nv_inference_request_success' \
    || { show_logs; fail "no nv_inference_request_success in http://$METRICS/metrics"; }
log "metrics answer on $METRICS"

show_logs
T=$(now)
docker stop -t 10 "$CID" >/dev/null
for _ in $(seq 1 50); do
    docker inspect "$CID" >/dev/null 2>&1 || break
    sleep 0.1
done
docker inspect "$CID" >/dev/null 2>&1 && docker rm -f "$CID" >/dev/null 2>&1
CID=""
log "stopped and removed the container in $(since "$T") s"
log "OK: $TAG serves $MODEL (ready ${T_READY} s after docker run)"
