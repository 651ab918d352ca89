"""A small TCP proxy that injects faults between a client and a real server.

Modes: "pass" forwards bytes; "reset" accepts and closes with a TCP RST; "stall"
accepts and never answers. Faults hit the `count` connections (all with None) that
follow the first `after` ones, which are forwarded. Used to check retries, timeouts
and cancellation against real servers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class FaultProxy:
    """Listens on 127.0.0.1 on a free port and forwards to `target_port`."""

    def __init__(
        self, target_port: int, mode: str = "pass", count: int | None = None, after: int = 0
    ) -> None:
        self.target_port = target_port
        self.after = after  # connections forwarded untouched before the faults start
        self.mode = mode
        self.count = count
        self.accepted = 0
        self.faulted = 0
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _fault_now(self) -> bool:
        with self._lock:
            if self.mode == "pass" or self.accepted <= self.after:
                return False
            if self.count is not None and self.faulted >= self.count:
                return False
            self.faulted += 1
            return True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._sockets.append(client)
            self.connected.set()
            if self._fault_now():
                if self.mode == "reset":
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                    continue
                if self.mode == "stall":
                    continue  # kept open, never answered
            threading.Thread(target=self._forward_pair, args=(client,), daemon=True).start()

    def _forward_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
