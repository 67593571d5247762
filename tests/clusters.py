"""Ray sessions in tests: their processes (found by the session's private ``RAY_TMPDIR``)
and the sockets they listen on."""

from __future__ import annotations

import ipaddress
from typing import Any

import psutil


def session_processes(ray_tmp: str) -> list[Any]:
    """Live processes of the Ray session under ``ray_tmp``: started with it in their
    environment (Ray's processes inherit it; a worker renames its command line) or named
    in their command line."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            ours = process.environ().get("RAY_TMPDIR") == ray_tmp
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            ours = False
        if ours or ray_tmp in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def listening(processes: list[Any]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket ``processes`` listen on."""
    found = []
    for process in processes:
        try:
            sockets = process.net_connections("inet")
            name = process.name()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        found += [(s.laddr.ip, s.laddr.port, name) for s in sockets if s.status == "LISTEN"]
    return found


def outside_loopback(sockets: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The sockets reachable from another machine (not 127.0.0.0/8, ::1 or ::ffff:127.x)."""
    out = []
    for address, port, name in sockets:
        ip = ipaddress.ip_address(address)
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            out.append((address, port, name))
    return out
