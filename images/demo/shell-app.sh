#!/bin/sh
# A plain shell app with a SIGTERM trap: under `deputy-agent run` (not PID 1) it gets the signal,
# cleans up and exits 0. As PID 1 or under `sh -c "...; other"` it would not.
trap 'echo "shell-app: got SIGTERM, cleaning up"; sleep 0.2; echo "shell-app: clean exit"; exit 0' TERM
echo "shell-app: started as PID $$"
while :; do sleep 1 & wait $!; done
