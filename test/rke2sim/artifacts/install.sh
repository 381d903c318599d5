#!/bin/sh
# rke2sim's stand-in for the RKE2 install script, airgap (tar) path only.
# Written from the documented behaviour, not from the real script: it
# installs an artifact folder (INSTALL_RKE2_ARTIFACT_PATH) holding
# rke2.linux-amd64.tar.gz and sha256sum-amd64.txt, exactly where and how the
# real script would, and never enables or starts a unit.
#
# Variables: INSTALL_RKE2_ARTIFACT_PATH (required), INSTALL_RKE2_TAR_PREFIX
# (/usr/local, or /opt/rke2 when /usr/local is read-only or its own mount),
# INSTALL_RKE2_TYPE (server|agent: no effect in tar mode, both units are
# installed), INSTALL_RKE2_METHOD (only tar), INSTALL_RKE2_AGENT_IMAGES_DIR
# (/var/lib/rancher/rke2/agent/images), RKE2SIM_INSTALL_UNIT_DIR (where units
# go for a prefix other than /usr/local; /etc/systemd/system; for tests).
# INSTALL_RKE2_VERSION and
# INSTALL_RKE2_CHANNEL are ignored in airgap mode, as by the real script.
# It fails where the real script fails, in its words: not root; an artifact
# missing (a bare `cp: cannot stat …`, exit 1); any archive whose sha256 is
# not the one sha256sum-amd64.txt gives ("download sha256 does not match X,
# got Y"). Extra rke2-images-* archives are copied only when the core
# rke2-images archive's checksum is in sha256sum-amd64.txt.
set -e

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    fatal "You need to be root to perform this install"
fi

ARTIFACT_PATH="${INSTALL_RKE2_ARTIFACT_PATH:-}"
[ -n "${ARTIFACT_PATH}" ] || fatal "this rke2sim installer only installs from INSTALL_RKE2_ARTIFACT_PATH (airgap)"

case "${INSTALL_RKE2_METHOD:-tar}" in
    tar) ;;
    *) fatal "INSTALL_RKE2_METHOD=${INSTALL_RKE2_METHOD}: only tar is supported with INSTALL_RKE2_ARTIFACT_PATH" ;;
esac
case "${INSTALL_RKE2_TYPE:-server}" in
    server|agent) ;;
    *) fatal "INSTALL_RKE2_TYPE=${INSTALL_RKE2_TYPE}: want server or agent" ;;
esac

if [ -z "${INSTALL_RKE2_TAR_PREFIX:-}" ]; then
    INSTALL_RKE2_TAR_PREFIX=/usr/local
    if [ -d /usr/local ] && { ! touch /usr/local/.rke2-install-probe 2>/dev/null || \
        { command -v mountpoint >/dev/null 2>&1 && mountpoint -q /usr/local; }; }; then
        INSTALL_RKE2_TAR_PREFIX=/opt/rke2
    fi
    rm -f /usr/local/.rke2-install-probe 2>/dev/null || true
fi
PREFIX="${INSTALL_RKE2_TAR_PREFIX}"
IMAGES_DIR="${INSTALL_RKE2_AGENT_IMAGES_DIR:-/var/lib/rancher/rke2/agent/images}"
UNIT_DIR="${RKE2SIM_INSTALL_UNIT_DIR:-/etc/systemd/system}"
TARBALL=rke2.linux-amd64.tar.gz
SUMS=sha256sum-amd64.txt

if command -v rpm >/dev/null 2>&1 && rpm -q rke2-common >/dev/null 2>&1; then
    fatal "RKE2 is installed from RPMs on this host: remove them before a tar install"
fi

TMP_DIR=$(mktemp -d -t rke2-install.XXXXXXXXXX)
trap 'rm -rf "${TMP_DIR}"' EXIT

info "staging artifacts from ${ARTIFACT_PATH}"
cp -f "${ARTIFACT_PATH}/${SUMS}" "${TMP_DIR}/${SUMS}"
cp -f "${ARTIFACT_PATH}/${TARBALL}" "${TMP_DIR}/${TARBALL}"

# The checksum file is plain sha256sum output: the hash of the line naming
# the tarball (the first field). Any other line is ignored.
EXPECTED=$(awk -v f="${TARBALL}" '$2 == f || $2 == "*" f { print $1 }' "${TMP_DIR}/${SUMS}")
GOT=$(sha256sum "${TMP_DIR}/${TARBALL}" | awk '{ print $1 }')
if [ "${EXPECTED}" != "${GOT}" ]; then
    fatal "download sha256 does not match ${EXPECTED}, got ${GOT}"
fi

# sha256_of NAME: the expected hash of NAME in the checksum file ("" if none).
sha256_of() {
    awk -v f="$1" '$2 == f || $2 == "*" f { print $1 }' "${TMP_DIR}/${SUMS}"
}
# verify FILE NAME: fail as the real script does when the hash differs.
verify() {
    expected=$(sha256_of "$2")
    got=$(sha256sum "$1" | awk '{ print $1 }')
    if [ "${expected}" != "${got}" ]; then
        fatal "download sha256 does not match ${expected}, got ${got}"
    fi
}

# The core images archive (zst, else gz), verified; extra rke2-images-*
# archives only when the core archive's checksum is in the checksum file, as
# the real script does; each one verified before it is copied.
MAIN_IMAGES=
for suffix in tar.zst tar.gz; do
    if [ -f "${ARTIFACT_PATH}/rke2-images.linux-amd64.${suffix}" ]; then
        MAIN_IMAGES="rke2-images.linux-amd64.${suffix}"
        break
    fi
done
if [ -n "${MAIN_IMAGES}" ]; then
    info "staging local airgap image tarball from ${ARTIFACT_PATH}/${MAIN_IMAGES}"
    cp -f "${ARTIFACT_PATH}/${MAIN_IMAGES}" "${TMP_DIR}/${MAIN_IMAGES}"
    verify "${TMP_DIR}/${MAIN_IMAGES}" "${MAIN_IMAGES}"
    mkdir -p "${IMAGES_DIR}"
    info "installing airgap tarball to ${IMAGES_DIR}"
    cp -f "${TMP_DIR}/${MAIN_IMAGES}" "${IMAGES_DIR}/${MAIN_IMAGES}"
fi
if [ -n "$(sha256_of rke2-images.linux-amd64.tar.zst)$(sha256_of rke2-images.linux-amd64.tar.gz)" ]; then
    for image in "${ARTIFACT_PATH}"/rke2-images-*.linux-amd64*; do
        [ -f "${image}" ] || continue
        name=$(basename "${image}")
        cp -f "${image}" "${TMP_DIR}/${name}"
        verify "${TMP_DIR}/${name}" "${name}"
        mkdir -p "${IMAGES_DIR}"
        info "installing ${name} to ${IMAGES_DIR}"
        cp -f "${TMP_DIR}/${name}" "${IMAGES_DIR}/${name}"
    done
fi

info "unpacking ${TARBALL} under ${PREFIX}"
mkdir -p "${PREFIX}"
tar xzf "${TMP_DIR}/${TARBALL}" -C "${PREFIX}"

# systemd reads units from /usr/local/lib/systemd/system but not from another
# prefix: there the units point at the prefix and move to the system folder.
if [ "${PREFIX}" != /usr/local ]; then
    info "rewriting /usr/local to ${PREFIX} in the units and the uninstall script"
    for f in "${PREFIX}"/lib/systemd/system/rke2-*.service "${PREFIX}/bin/rke2-uninstall.sh"; do
        [ -f "${f}" ] && sed -i "s|/usr/local|${PREFIX}|g" "${f}"
    done
    mkdir -p "${UNIT_DIR}"
    info "moving the units to ${UNIT_DIR}"
    mv -f "${PREFIX}"/lib/systemd/system/rke2-*.service "${UNIT_DIR}/"
fi

if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || warn "systemctl daemon-reload failed"
fi
info "installed; no unit was enabled or started"
