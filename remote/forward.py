"""A local TCP listener on 127.0.0.1 whose connections are carried by SSH "direct-tcpip" channels."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable

import paramiko

log = logging.getLogger(__name__)
BUFFER = 256 * 1024

#: Opens a channel to the forward's destination for a connection from `origin`.
ChannelOpener = Callable[[tuple[str, int]], paramiko.Channel]


def pump(sock: socket.socket, channel: paramiko.Channel) -> None:
    """Copy bytes both ways until either side closes (one thread, one selector)."""
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "sock")
    selector.register(channel, selectors.EVENT_READ, "channel")
    try:
        while True:
            for ready, _ in selector.select(timeout=30.0):
                if ready.data == "sock":
                    data = sock.recv(BUFFER)
                    if not data:
                        return
                    channel.sendall(data)
                else:
                    data = channel.recv(BUFFER)
                    if not data:
                        return
                    sock.sendall(data)
            if channel.closed or (channel.transport is not None and not channel.transport.is_active()):
                return
    except (OSError, EOFError, paramiko.SSHException):
        return
    finally:
        selector.close()
        with contextlib.suppress(OSError):
            sock.close()
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            channel.close()


class LocalForward:
    """Listens on 127.0.0.1:port (0 = any free port); each accepted connection gets its own channel."""

    def __init__(self, opener: ChannelOpener, *, port: int = 0, name: str = "forward") -> None:
        self._opener = opener
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"{name}:{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, origin = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock, origin), daemon=True).start()

    def _serve(self, sock: socket.socket, origin: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            channel = self._opener(origin)
        except Exception as error:  # the link is down or the box refused: drop this connection
            log.debug("forward %d: cannot open channel: %s", self.port, error)
            sock.close()
            return
        pump(sock, channel)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
