#!/usr/bin/env bash
# Radio API start.sh: the match begins. Launch the pamdi node (agent bound to the radio interface,
# and on RF node 1 the experiment leader) in the background and return at once (5 s limit).
# Input: /root/radio_api/radio.conf (pushed by Colosseum from the batch's ModemConfig; written by
# `pamdi colosseum batch`). Output: exit 0 when launched; progress in /logs/pamdi-node.log and in
# status.sh's INFO.
set -u
. "$(dirname "$0")/common.sh"
mkdir -p "$PAMDI_LOGS_DIR"
conf=$PAMDI_RADIO_API_DIR/radio.conf
if [ ! -f "$conf" ]; then
    set_state ERROR "no $conf"
    echo "start.sh: no $conf" >&2
    exit 1
fi
if [ -f "$PAMDI_STATE_FILE.pid" ] && kill -0 "$(cat "$PAMDI_STATE_FILE.pid")" 2>/dev/null; then
    exit 0  # already running: start.sh may be called more than once
fi
rm -f "$PAMDI_STATE_FILE.exit"
set_state ACTIVE "pamdi node starting"  # before the launch: the node's own state updates win
setsid nohup "$PAMDI_PYTHON" "$(dirname "$0")/pamdi_batch_node.py" "$conf" \
    >> "$PAMDI_LOGS_DIR/pamdi-node.log" 2>&1 < /dev/null &
echo $! > "$PAMDI_STATE_FILE.pid"
exit 0
