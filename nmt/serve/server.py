"""Running the app with uvicorn on a socket we bind ourselves, so ``--port 0`` (a free port)
can be reported, and tests and the load test can run a server in a thread."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from nmt.errors import NMTError

LOCAL_HOSTS = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        NMTError: the address is taken or cannot be bound, naming ``--host``/``--port``.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise NMTError(
            f"--host {host} cannot be used ({err.strerror or err}): try 127.0.0.1"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise NMTError(
            f"cannot listen on {host}:{port} ({err.strerror or err}): choose another --port "
            "(0 picks a free one)"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(
    app: FastAPI, access_log: bool = False, log_config: dict | None = None
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=access_log,
        log_config=log_config,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def background_server(
    app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 120.0
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a thread; yield its base URL; stop it
    (and wait for its thread, at most ``timeout_s``) on exit.

    Raises:
        NMTError: the server did not start within ``timeout_s`` (or failed to start).
    """
    sock = bind(host, 0)
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise NMTError(f"the test server on {url_of(sock)} did not start")
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
