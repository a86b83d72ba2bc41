#!/bin/sh
# Registers this shell script for graceful termination with the deputy protocol, using
# OpenBSD netcat (`nc -U`). The listener must be the registered PID itself, so the script
# ends by exec'ing nc in place of the shell; a helper waits for the request and stops the work.
set -eu
dir=${DEPUTY_IPC_DIR:-/run}
sock="$dir/graceful-terminator.$$.socket"
fifo="$dir/.deputy-request.$$"

sleep 1000000 & worker=$!            # the app's real work

rm -f "$fifo" "$sock" && mkfifo -m 600 "$fifo"
(
  # nc's stdout carries the request, and also the preStop's log lines (deputy-agent mirrors
  # them to the target's stdout): pass those on to ours so they reach kubectl logs.
  exec 3< "$fifo"
  while IFS= read -r line <&3; do
    [ "$line" = terminate ] && break
    printf '%s\n' "$line"
  done
  echo "terminating: stopping the worker"
  kill -TERM "$worker"
  rm -f "$sock" "$fifo"
  kill -TERM $$                      # ends nc, which now holds this PID: the client sees us exit
) &

printf '%s\n' $$ > "$dir/deputy-entrypoint.pid.tmp.$$"
mv -f "$dir/deputy-entrypoint.pid.tmp.$$" "$dir/deputy-entrypoint.pid"
echo "registered pid=$$"
umask 077
exec nc -lU "$sock" > "$fifo" < /dev/null
