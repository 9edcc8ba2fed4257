"""Where a local server listens (``rnnkit serve`` and ``rnnkit explore``): the address bound
before any model loads, so a port in use or a host that is not this machine's is one line at
once, and what the startup line says."""

from __future__ import annotations

import errno
import ipaddress
import socket

from rnnkit.errors import RnnkitError


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port``, or a one-line error saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise RnnkitError(f"--host {host}: not an address to listen on ({reason})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise RnnkitError(
                f"--port {port}: already in use on {host} (another server?); "
                "pick another, or --port 0 for a free one"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise RnnkitError(f"--host {host}: not an address of this machine") from None
        if err.errno == errno.EACCES:
            why = "not allowed here (below 1024 needs privileges); pick another"
            raise RnnkitError(f"--port {port}: {why}") from None
        raise RnnkitError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    return sock


def is_loopback(sock: socket.socket) -> bool:
    """Whether ``sock`` listens on a loopback address (no other machine can reach it)."""
    address = sock.getsockname()[0]
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def url(sock: socket.socket) -> str:
    """The ``http://host:port`` address ``sock`` listens on (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
