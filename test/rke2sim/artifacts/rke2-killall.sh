#!/bin/sh
# rke2sim stand-in for rke2-killall.sh: stop both roles and anything left of them.
set -u
[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root" >&2; exit 1; }
for unit in rke2-server.service rke2-agent.service; do
    if command -v systemctl >/dev/null 2>&1; then
        pid=$(systemctl show --property MainPID --value "$unit" 2>/dev/null || echo 0)
        systemctl stop "$unit" 2>/dev/null || true
        # KillMode=process leaves children behind on a real host; the sim has none,
        # but its main process may outlive a failed stop.
        if [ -n "$pid" ] && [ "$pid" != 0 ] && kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
done
# The kube-vip stand-in can outlive a stopped server (RKE2SIM_KUBEVIP_OUTLIVES),
# as kube-vip's container does; killall stops it as it stops the containers.
pidfile="${RKE2_DATA_DIR:-/var/lib/rancher/rke2}/sim/kube-vip.pid"
if [ -f "$pidfile" ] && read -r vpid < "$pidfile" && [ -n "$vpid" ]; then
    kill "$vpid" 2>/dev/null || true
fi
exit 0
