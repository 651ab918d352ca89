"""A small TCP proxy that injects faults between a client and a real server.

Modes: "pass" forwards bytes; "reset" accepts and closes with a TCP RST; "stall"
accepts and never answers; "truncate" forwards the request but only the first
`truncate_after` bytes of the answer, then resets; "slow" forwards the answer at
`bytes_per_second`; "http" answers one canned HTTP response (`http_status`,
`http_body`) without reaching the server, as a store that is failing or
throttling does. Faults hit the `count` connections (all with None) that follow
the first `after` ones, which are forwarded. The mode may be changed while the
proxy runs (a store that recovers). Loopback only. Used to check retries,
timeouts and cancellation against real servers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class FaultProxy:
    """Listens on 127.0.0.1 on a free port and forwards to `target_port`."""

    def __init__(
        self,
        target_port: int,
        mode: str = "pass",
        count: int | None = None,
        after: int = 0,
        *,
        truncate_after: int = 1024,
        bytes_per_second: int = 64 * 1024,
        http_status: str = "503 Service Unavailable",
        http_body: bytes = b"",
    ) -> None:
        self.target_port = target_port
        self.truncate_after = truncate_after
        self.bytes_per_second = bytes_per_second
        self.http_status = http_status
        self.http_body = http_body
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
            mode = self.mode if self._fault_now() else "pass"
            if mode == "reset":
                _reset(client)
                continue
            if mode == "stall":
                continue  # kept open, never answered
            target = self._answer_http if mode == "http" else self._forward_pair
            threading.Thread(target=target, args=(client, mode), daemon=True).start()

    def _answer_http(self, client: socket.socket, _mode: str) -> None:
        head = (
            f"HTTP/1.1 {self.http_status}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(self.http_body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            client.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:  # read the request head, then answer
                chunk = client.recv(65536)
                if not chunk:
                    break
                request += chunk
            client.sendall(head + self.http_body)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _forward_pair(self, client: socket.socket, mode: str) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client, mode), daemon=True).start()
        self._pipe(client, upstream, "pass")

    def _pipe(self, src: socket.socket, dst: socket.socket, mode: str) -> None:
        sent = 0
        try:
            while data := src.recv(16384 if mode == "slow" else 65536):
                if mode == "truncate" and sent + len(data) >= self.truncate_after:
                    dst.sendall(data[: max(0, self.truncate_after - sent)])
                    _reset(dst)
                    return
                if mode == "slow":
                    time.sleep(len(data) / self.bytes_per_second)
                dst.sendall(data)
                sent += len(data)
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


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
