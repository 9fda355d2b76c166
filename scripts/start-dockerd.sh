#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
#   scripts/start-dockerd.sh
#
# - Exits 0 at once when `docker info` already works (a running dockerd, or DOCKER_HOST
#   pointing at one).
# - Otherwise, as root, starts `dockerd` in the background, detached (setsid + nohup) so it
#   outlives this script and the shell that ran it, logging to $DOCKERD_LOG
#   (default /tmp/dockerd.log), and waits up to $DOCKERD_WAIT_S seconds (default 60)
#   for `docker info`.
# - Exits non-zero, with the tail of the log, when it does not come up.
#
# Why this is needed: Debian's docker.io postinst does not start the daemon on these machines
# (no systemd, and /usr/sbin/policy-rc.d exits 101: "policy-rc.d denied execution of start"),
# so after `apt-get install docker.io` only the client works until dockerd is started by hand.
# dockerd starts its own containerd child; nothing else needs starting.
set -euo pipefail

log() { echo "start-dockerd: $*"; }

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"

engine_answers() {
    docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

if ! command -v docker >/dev/null 2>&1; then
    log "no docker client on PATH; install docker.io first (scripts/install-system-deps.sh)" >&2
    exit 1
fi

if engine_answers; then
    log "Docker engine already answers (server $(docker info --format '{{.ServerVersion}}' 2>/dev/null)); nothing to do"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ] && [ "${DOCKER_HOST}" != "unix:///run/docker.sock" ]; then
    log "DOCKER_HOST=${DOCKER_HOST} does not answer, and this script only starts a local dockerd on /var/run/docker.sock; unset DOCKER_HOST or start that engine" >&2
    exit 1
fi

DOCKERD="$(command -v dockerd || true)"
[ -z "$DOCKERD" ] && [ -x /usr/sbin/dockerd ] && DOCKERD=/usr/sbin/dockerd
if [ -z "$DOCKERD" ]; then
    log "no dockerd on this machine; install docker.io first (scripts/install-system-deps.sh)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    log "the Docker engine is not running and starting dockerd needs root (sudo $0)" >&2
    exit 1
fi

# One starter at a time (parallel `make test` runs, test workers): the others wait here and
# then find the engine answering.
exec 8>/tmp/start-dockerd.lock
flock -w $(( DOCKERD_WAIT_S + 30 )) 8 || { log "timed out waiting for /tmp/start-dockerd.lock" >&2; exit 1; }
if engine_answers; then
    log "Docker engine answers (started meanwhile; server $(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
fi

# A dockerd that is already starting (another run of this script, say): wait for it instead
# of starting a second one, which would fail on the pid file.
running_pid=""
if [ -r /var/run/docker.pid ]; then
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "dockerd" ]; then
        running_pid="$pid"
    fi
fi

start=$(date +%s.%N)
if [ -n "$running_pid" ]; then
    log "dockerd (pid $running_pid) is running but does not answer yet; waiting for it"
else
    log "starting $DOCKERD in the background (log: $DOCKERD_LOG)"
    : >>"$DOCKERD_LOG"
    echo "=== start-dockerd.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >>"$DOCKERD_LOG"
    # setsid: own session, so it survives this script's process group being killed;
    # nohup + </dev/null: no SIGHUP and no terminal.
    # (8>&-: the daemon must not inherit, and so hold forever, the lock above)
    setsid nohup "$DOCKERD" >>"$DOCKERD_LOG" 2>&1 </dev/null 8>&- &
    running_pid=$!
    disown "$running_pid" 2>/dev/null || true
fi

deadline=$(( $(date +%s) + DOCKERD_WAIT_S ))
while ! engine_answers; do
    if ! kill -0 "$running_pid" 2>/dev/null; then
        # (setsid forks when it happens to lead its process group: then the daemon is the pid
        # in dockerd's own pid file)
        pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
        if [ -n "$pid" ] && [ "$pid" != "$running_pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "dockerd" ]; then
            running_pid="$pid"
            continue
        fi
        log "dockerd (pid $running_pid) exited before it answered; last lines of $DOCKERD_LOG:" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "dockerd (pid $running_pid) did not answer within ${DOCKERD_WAIT_S} s; last lines of $DOCKERD_LOG:" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
[ -n "$pid" ] && running_pid="$pid"
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "Docker engine up after ${elapsed} s: dockerd pid $running_pid, server $(docker info --format '{{.ServerVersion}}' 2>/dev/null), log $DOCKERD_LOG"
