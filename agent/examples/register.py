#!/usr/bin/env python3
"""Registers this Python process for graceful termination with the deputy protocol
(no library needed): `deputy-agent terminate` in the Pod's preStop then reaches on_terminate."""
import os, socket, sys

ipc_dir = os.environ.get("DEPUTY_IPC_DIR", "/run")
pid = os.getpid()

def on_terminate():
    print("terminating: flushing and closing", flush=True)
    sys.exit(0)

# 1. Claim the entrypoint (atomically), unless deputy-agent run supervises us and already is.
if not os.environ.get("DEPUTY_SUPERVISOR_PID"):
    tmp = os.path.join(ipc_dir, f"deputy-entrypoint.pid.tmp.{pid}")
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, os.path.join(ipc_dir, "deputy-entrypoint.pid"))
# 2. Listen on graceful-terminator.<pid>.socket, owner-only.
path = os.path.join(ipc_dir, f"graceful-terminator.{pid}.socket")
if os.path.exists(path):
    os.remove(path)
os.umask(0o077)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen()
print(f"registered pid={pid}", flush=True)
# 3. Serve requests: "terminate" gets "ok", then the callback runs.
while True:
    conn, _ = server.accept()
    conn.settimeout(1)
    try:
        line = conn.makefile("rb").readline(64).strip()
    except OSError:
        continue
    if line == b"terminate":
        conn.sendall(b"ok\n")
        os.remove(path)
        on_terminate()
    conn.sendall(b"error unknown request\n")
    conn.close()
