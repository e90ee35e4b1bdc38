# Shared settings of the pamdi Radio API scripts (sourced by start.sh, stop.sh, status.sh).
# Colosseum calls /root/radio_api/{start,stop,status}.sh in batch mode; each must return within
# 5 s (radio_api_traffic/radio_command_and_control_c2_api.rst). Paths are overridable for tests
# and exported so that the node process and the experiment leader see the same ones.
PAMDI_RADIO_API_DIR=${PAMDI_RADIO_API_DIR:-/root/radio_api}
PAMDI_LOGS_DIR=${PAMDI_LOGS_DIR:-/logs}
PAMDI_STATE_FILE=${PAMDI_STATE_FILE:-/tmp/pamdi_radio_state}
PAMDI_PYTHON=${PAMDI_PYTHON:-python3}
export PAMDI_RADIO_API_DIR PAMDI_LOGS_DIR PAMDI_STATE_FILE
# The node image's venv (Dockerfile: /opt/pamdi); `lxc exec` does not read the image's ENV.
[ -d /opt/pamdi/bin ] && PATH=/opt/pamdi/bin:$PATH
# State files: $PAMDI_STATE_FILE holds the state, .info the text for INFO, .pid the node process,
# .exit the node process's exit code once it has ended (0: the experiment ended normally).
set_state() {  # set_state STATE [INFO]
    printf '%s\n' "${2:-}" > "$PAMDI_STATE_FILE.info.tmp" && mv -f "$PAMDI_STATE_FILE.info.tmp" "$PAMDI_STATE_FILE.info"
    printf '%s\n' "$1" > "$PAMDI_STATE_FILE.tmp" && mv -f "$PAMDI_STATE_FILE.tmp" "$PAMDI_STATE_FILE"
}
