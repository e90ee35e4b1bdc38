# Shared settings of the pamdi Radio API scripts (sourced by start.sh, stop.sh, status.sh).
# Colosseum calls /root/radio_api/{start,stop,status}.sh in batch mode; each must return within
# 5 s (radio_api_traffic/radio_command_and_control_c2_api.rst). Paths are overridable for tests.
PAMDI_RADIO_API_DIR=${PAMDI_RADIO_API_DIR:-/root/radio_api}
PAMDI_LOGS_DIR=${PAMDI_LOGS_DIR:-/logs}
PAMDI_STATE_FILE=${PAMDI_STATE_FILE:-/tmp/pamdi_radio_state}
PAMDI_PYTHON=${PAMDI_PYTHON:-python3}
set_state() {  # set_state STATE [INFO]
    printf '%s\n' "$1" > "$PAMDI_STATE_FILE.tmp" && mv -f "$PAMDI_STATE_FILE.tmp" "$PAMDI_STATE_FILE"
    printf '%s\n' "${2:-}" > "$PAMDI_STATE_FILE.info"
}
