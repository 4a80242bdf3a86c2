"""A tiny TCP proxy for fault tests: it forwards to a server and can cut or stall connections.

``cut()`` closes every connection through it at once (the client sees the server vanish);
``stall()`` stops forwarding in both directions while keeping the sockets open (a hung
network or server: TCP stays up, nothing arrives) until ``resume()``;
``cut_after(b"COMMIT")`` forwards the next client message that contains those bytes to the
server, then closes the connection before the server's answer reaches the client.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._trigger: bytes | None = None
        self.cuts_on_trigger = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    # -- faults ------------------------------------------------------------------------------
    def cut(self) -> None:
        """Close every open connection through the proxy (new ones still go through)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def cut_after(self, marker: bytes) -> None:
        """Forward the next client message holding ``marker``, then cut before the answer."""
        self._trigger = marker

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
        for t in self._threads:
            t.join(5)

    # -- forwarding ---------------------------------------------------------------------------
    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            t = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._stop.is_set():
                if self._stalled.is_set():
                    time.sleep(0.02)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for s in ready:
                    if self._stalled.is_set():
                        break  # read nothing more: the bytes wait in the kernel
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[s].sendall(data)
                    marker = self._trigger
                    if s is client and marker is not None and marker in data:
                        self._trigger = None
                        self.cuts_on_trigger += 1
                        time.sleep(0.3)  # the server commits meanwhile; its answer is dropped
                        raise OSError("cut after marker")
        except (OSError, ValueError):
            pass
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, server))
