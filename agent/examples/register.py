#!/usr/bin/env python3
"""Registers this Python process for graceful termination with the deputy protocol (no library
needed). The README shows this file verbatim; tests/integration/examples.rs runs it."""
import os, socket, sys
ipc_dir = os.environ.get("DEPUTY_IPC_DIR", "/run")
pid = os.getpid()
if not os.environ.get("DEPUTY_SUPERVISOR_PID"):            # claim the entrypoint, atomically
    tmp = os.path.join(ipc_dir, f"deputy-entrypoint.pid.tmp.{pid}")
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, os.path.join(ipc_dir, "deputy-entrypoint.pid"))
path = os.path.join(ipc_dir, f"graceful-terminator.{pid}.socket")
if os.path.exists(path):
    os.remove(path)
os.umask(0o077)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path); server.listen()
print(f"registered pid={pid}", flush=True)
while True:
    conn, _ = server.accept(); conn.settimeout(1)
    if conn.makefile("rb").readline(64).strip() == b"terminate":
        conn.sendall(b"ok\n"); os.remove(path)
        print("terminating: flushing and closing", flush=True); sys.exit(0)
    conn.sendall(b"error unknown request\n"); conn.close()
