#!/bin/sh
# A plain shell app with a SIGTERM trap. Under `deputy-agent run` it gets the signal, cleans up and
# exits 0. Under `sh -c "app; other"` it never does: the shell is PID 1 and forwards nothing, so the
# container waits out its grace period. (Alone as PID 1 its trap does run: a handled signal reaches
# PID 1; it is the default action that PID 1 ignores.)
trap 'echo "shell-app: got SIGTERM, cleaning up"; sleep 0.2; echo "shell-app: clean exit"; exit 0' TERM
echo "shell-app: started as PID $$"
while :; do sleep 1 & wait $!; done
