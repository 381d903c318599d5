#!/bin/sh
# rke2sim stand-in for rke2-uninstall.sh. The installer rewrites /usr/local
# below when it unpacks under another prefix.
set -eu
RKE2_PREFIX=/usr/local
[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root" >&2; exit 1; }
"${RKE2_PREFIX}/bin/rke2-killall.sh" || true
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable rke2-server.service rke2-agent.service 2>/dev/null || true
    systemctl reset-failed rke2-server.service rke2-agent.service 2>/dev/null || true
fi
rm -f "${RKE2_PREFIX}/bin/rke2" "${RKE2_PREFIX}/bin/rke2-killall.sh"
rm -f "${RKE2_PREFIX}/lib/systemd/system/rke2-server.service" "${RKE2_PREFIX}/lib/systemd/system/rke2-server.env"
rm -f "${RKE2_PREFIX}/lib/systemd/system/rke2-agent.service" "${RKE2_PREFIX}/lib/systemd/system/rke2-agent.env"
rm -rf "${RKE2_PREFIX}/share/rke2"
if [ "${RKE2_PREFIX}" != "/usr/""local" ]; then
    rm -f /etc/systemd/system/rke2-server.service /etc/systemd/system/rke2-agent.service
fi
rm -rf /etc/rancher/rke2 /var/lib/rancher/rke2
if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
fi
rm -f "${RKE2_PREFIX}/bin/rke2-uninstall.sh"
