#!/usr/bin/env bash
# Radio API status.sh: print {"STATUS": ..., "INFO": ...} with one of the documented states
# (OFF, BOOTING, READY, ACTIVE, STOPPING, FINISHED, ERROR). Before start.sh the radio is READY
# (the image needs no boot-time preparation). While the match runs the state stays ACTIVE (the
# docs: FINISHED only after stop.sh); INFO tells the experiment's progress ("finished: ..." once
# the leader has written the results). An ACTIVE node whose process died without recording a
# normal end (exit code 0 in $PAMDI_STATE_FILE.exit) reports ERROR.
set -u
. "$(dirname "$0")/common.sh"
state=READY
info="waiting for start.sh"
if [ -f "$PAMDI_STATE_FILE" ]; then
    state=$(cat "$PAMDI_STATE_FILE")
    info=$(cat "$PAMDI_STATE_FILE.info" 2>/dev/null || true)
fi
if [ "$state" = ACTIVE ]; then
    pid=$(cat "$PAMDI_STATE_FILE.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then  # no pid yet: start.sh is launching it
        if [ "$(cat "$PAMDI_STATE_FILE.exit" 2>/dev/null)" != 0 ]; then
            state=ERROR
            info="pamdi node exited; see $PAMDI_LOGS_DIR/pamdi-node.log"
        fi
    fi
fi
# JSON-escape the info text (backslashes and double quotes; newlines become spaces).
info=$(printf '%s' "$info" | tr '\n\r\t' '   ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
printf '{"STATUS": "%s", "INFO": "%s"}\n' "$state" "$info"
