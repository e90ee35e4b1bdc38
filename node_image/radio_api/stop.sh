#!/usr/bin/env bash
# Radio API stop.sh: the match is over. Stop the pamdi node (SIGTERM: agents flush their traces),
# copy what it wrote into /logs (Colosseum copies /logs to the NAS), return at once (5 s limit);
# the clean-up finishes in the background within the 2 minutes Colosseum allows, then FINISHED.
set -u
. "$(dirname "$0")/common.sh"
set_state STOPPING "stopping pamdi node"
pid=$(cat "$PAMDI_STATE_FILE.pid" 2>/dev/null || true)
(
    if [ -n "$pid" ]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PAMDI_STATE_FILE.pid"
    set_state FINISHED "pamdi node stopped; traces in $PAMDI_LOGS_DIR"
) > /dev/null 2>&1 < /dev/null &
exit 0
