#!/usr/bin/env bash
# Sets podman up for this kind of machine, in a private folder, and serves the Docker API on a unix socket.
#
# These machines (a VM whose root lacks CAP_SYS_RESOURCE, cgroup v1, no systemd) refuse crun's cgroup and rlimit
# calls and podman's default ulimits (nofile=1048576 is above the host's hard limit). So, in a private config that
# leaves /etc/containers alone: runtime runc, cgroup manager cgroupfs, the host's own ulimits as defaults, events in
# a file, host networking (no bridge/iptables here; containers reach loopback servers), storage in the folder.
#
# Writes $KFP_CT_PODMAN_HOME/env.sh (source it): CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and DOCKER_HOST.
# DOCKER_HOST points at docker_api_shim.py, which passes the Docker API through to `podman system service`
# and only turns podman 4.3's "500 no such container" into Docker's 404 (see that file for why).
#
# usage: podman-setup.sh [start|stop|status]     (start is idempotent)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
H="${KFP_CT_PODMAN_HOME:-/var/tmp/kfp-ct-podman}"
PYTHON="${PYTHON:-python3}"
PODMAN_SOCK="$H/podman.sock"
DOCKER_SOCK="$H/docker.sock"

alive() {  # alive SOCKET: a Docker API answers _ping on it
    "$PYTHON" - "$1" <<'PY'
import http.client, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.settimeout(5); self.sock.connect(sys.argv[1])
try:
    c = C("localhost"); c.request("GET", "/_ping"); sys.exit(0 if c.getresponse().status == 200 else 1)
except OSError:
    sys.exit(1)
PY
}

stop() {
    for name in shim service; do
        if [ -f "$H/$name.pid" ]; then
            kill "$(cat "$H/$name.pid")" 2>/dev/null || true
            rm -f "$H/$name.pid"
        fi
    done
}

case "${1:-start}" in
    stop) stop; exit 0 ;;
    status) alive "$DOCKER_SOCK" && echo "Docker API up at unix://$DOCKER_SOCK" || { echo "not running"; exit 1; }; exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "podman and runc are missing: sudo apt-get install podman runc" >&2; exit 1; }
    echo "installing podman and runc (apt-get)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman runc conmon uidmap
fi

mkdir -p "$H/storage" "$H/run" "$H/tmp"
# The host's hard limits: podman itself caps nproc at 32768 for the runtime it starts, so never ask for more.
nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
[ "$nofile" = unlimited ] && nofile=1048576
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
cat > "$H/containers.conf" <<CONF
# Written by .ci/containers/podman-setup.sh for this kind of machine; see there.
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$H/events.log"
tmp_dir = "$H/tmp"
CONF
cat > "$H/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$H/storage"
runroot = "$H/run"
CONF
cat > "$H/env.sh" <<CONF
export CONTAINERS_CONF="$H/containers.conf"
export CONTAINERS_STORAGE_CONF="$H/storage.conf"
export DOCKER_HOST="unix://$DOCKER_SOCK"
CONF
export CONTAINERS_CONF="$H/containers.conf" CONTAINERS_STORAGE_CONF="$H/storage.conf"

if ! alive "$PODMAN_SOCK"; then
    stop
    rm -f "$PODMAN_SOCK"
    setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" >"$H/service.log" 2>&1 < /dev/null &
    echo $! > "$H/service.pid"
fi
if ! alive "$DOCKER_SOCK"; then
    [ -f "$H/shim.pid" ] && kill "$(cat "$H/shim.pid")" 2>/dev/null || true
    setsid nohup "$PYTHON" "$HERE/docker_api_shim.py" "$DOCKER_SOCK" "$PODMAN_SOCK" >"$H/shim.log" 2>&1 < /dev/null &
    echo $! > "$H/shim.pid"
fi
for _ in $(seq 60); do
    alive "$DOCKER_SOCK" && alive "$PODMAN_SOCK" && { echo "Docker API (podman $(podman --version | awk '{print $3}')) at unix://$DOCKER_SOCK; source $H/env.sh"; exit 0; }
    sleep 0.5
done
echo "podman system service did not answer; its log:" >&2; tail -20 "$H/service.log" "$H/shim.log" >&2; exit 1
