#!/bin/sh
# make-artifacts.sh BIN OUTDIR [VERSION]: an airgap artifact folder in
# RKE2's layout with BIN (rke2sim) as bin/rke2, plus install.sh, rke2sim's
# stand-in for the install script. VERSION (else RKE2SIM_VERSION), when
# given, becomes what `rke2 --version` prints (share/rke2/sim-version); it
# must look like RKE2's, v1.MINOR.PATCH+rke2rN. Artifacts of two versions
# sit side by side in two OUTDIRs.
set -eu

if [ $# -ne 2 ] && [ $# -ne 3 ]; then
    echo "usage: $0 BIN OUTDIR [VERSION]" >&2
    exit 2
fi
BIN=$1
OUT=$2
if [ $# -eq 3 ]; then
    RKE2SIM_VERSION=$3
fi
if [ -n "${RKE2SIM_VERSION:-}" ] && ! printf '%s\n' "${RKE2SIM_VERSION}" | grep -Eq '^v1\.[0-9]+\.[0-9]+\+rke2r[0-9]+$'; then
    echo "$0: version ${RKE2SIM_VERSION}: want RKE2's form v1.MINOR.PATCH+rke2rN (e.g. v1.36.4+rke2r1)" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
SRC="${HERE}/artifacts"
[ -x "${BIN}" ] || { echo "$0: ${BIN}: not an executable" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "${STAGE}"' EXIT
mkdir -p "${STAGE}/bin" "${STAGE}/lib/systemd/system" "${STAGE}/share/rke2"
cp "${BIN}" "${STAGE}/bin/rke2"
cp "${SRC}/rke2-killall.sh" "${SRC}/rke2-uninstall.sh" "${STAGE}/bin/"
chmod 0755 "${STAGE}/bin/rke2" "${STAGE}/bin/rke2-killall.sh" "${STAGE}/bin/rke2-uninstall.sh"
for role in server agent; do
    cp "${SRC}/rke2-${role}.service" "${SRC}/rke2-${role}.env" "${STAGE}/lib/systemd/system/"
done
chmod 0644 "${STAGE}"/lib/systemd/system/*
printf '%s\n' "bin/rke2 here is rke2sim, a test stand-in for RKE2; it runs no Kubernetes." > "${STAGE}/share/rke2/README.rke2sim"
if [ -n "${RKE2SIM_VERSION:-}" ]; then
    printf '%s\n' "${RKE2SIM_VERSION}" > "${STAGE}/share/rke2/sim-version"
fi

mkdir -p "${OUT}"
# No top-level folder: the installer unpacks with tar -C PREFIX.
tar --sort=name --owner=0 --group=0 --numeric-owner \
    -czf "${OUT}/rke2.linux-amd64.tar.gz" -C "${STAGE}" bin lib share
(cd "${OUT}" && sha256sum rke2.linux-amd64.tar.gz > sha256sum-amd64.txt)
cp "${SRC}/install.sh" "${OUT}/install.sh"
chmod 0755 "${OUT}/install.sh"
echo "rke2sim artifacts in ${OUT}"
