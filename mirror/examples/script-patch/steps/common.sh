# Shared by the steps (sourced, not a step itself). The flash tool of a real BMC
# would be called here; this example keeps the "flashed" image in a directory,
# ACME_BMC_DIR (default /var/lib/acme-bmc), so it can be tried on any host.
set -eu
BMC_DIR=${ACME_BMC_DIR:-/var/lib/acme-bmc}
IMAGE=$PATCHWARD_ARTIFACT_ACME_BMC_2_1_BIN
mkdir -p "$BMC_DIR"
