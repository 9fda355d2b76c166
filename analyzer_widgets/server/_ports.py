"""Port checks: a taken port is an error that names it, an unset port is chosen free."""

from __future__ import annotations

import socket

from analyzer_widgets.errors import PortInUseError


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        # Triton sets SO_REUSEADDR too; without it a port in TIME_WAIT would look taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, avoid: set[int]) -> int:
    """A port the OS says is free now; the server binds it a moment later."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise OSError(f"could not find a free port on {host}")


def choose_ports(host: str, wanted: dict[str, int | None]) -> dict[str, int]:
    """Check the ports the user named and pick free ones for the rest.

    >>> sorted(choose_ports("127.0.0.1", {"http_port": None, "grpc_port": None}))
    ['grpc_port', 'http_port']
    """
    chosen: dict[str, int] = {}
    for name, port in wanted.items():
        if port is not None:
            if not port_is_free(host, port):
                raise PortInUseError(name, port)
            chosen[name] = port
    for name, port in wanted.items():
        if port is None:
            chosen[name] = free_port(host, set(chosen.values()))
    return chosen
