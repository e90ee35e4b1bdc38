# /etc/profile.d/pamdi.sh in the LXD image: what the Docker image sets with ENV.
export PATH=/opt/pamdi/bin:$PATH
export PYTHONUNBUFFERED=1
export PAMDI_TRACE_DIR=${PAMDI_TRACE_DIR:-/root/traces}
