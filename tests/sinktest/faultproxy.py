"""FaultProxy: a TCP proxy of the tests' own, in front of a real server, that injects network faults.

A network partition, or a managed database failing over to a new primary, does
not close the client's connection: packets simply stop arriving, with no FIN and
no RST. The client's socket stays open and every send or receive on it waits.
That cannot be produced by stopping the server (which resets connections), so
the tests put this proxy between the sink and PostgreSQL:

- `blackhole()`: from now on every byte is swallowed, in both directions, on the
  connections already open and on new ones (accepted, then never answered);
- `heal()`: new connections are forwarded again; those opened before stay dead
  for good, as they do after a failover;
- `drop()`: close every connection at once (a reset the client does see).

The proxy runs on a thread of its own with one forwarding thread per direction
of each connection; `close()` (or leaving the `with` block) ends them all.
"""
from __future__ import annotations

import socket
import threading

from sinkframe.devservices import free_port


class _Link:
    """One client connection and its upstream connection (None while blackholed)."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None):
        self.client = client
        self.upstream = upstream
        self.dead = upstream is None  # swallow everything from now on

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                # shutdown first: a close alone would wait for the thread blocked in recv on
                # it, and the peer would see nothing.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int | None = None):
        self.upstream = (upstream_host, upstream_port)
        self.port = listen_port or free_port()
        self.host = "127.0.0.1"
        self._blackholed = False
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server = socket.create_server((self.host, self.port), reuse_port=False)
        self._server.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)

    # -- control ----------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._acceptor.start()
        return self

    def blackhole(self) -> None:
        """Swallow every byte from now on, on open connections and on new ones."""
        with self._lock:
            self._blackholed = True
            for link in self._links:
                link.dead = True

    def heal(self) -> None:
        """Forward new connections again; the ones opened before stay dead."""
        with self._lock:
            self._blackholed = False

    def drop(self) -> None:
        """Close every connection now (the client sees a reset or an end of stream)."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    @property
    def connections(self) -> int:
        """Connections accepted and not closed (live or swallowed)."""
        with self._lock:
            return len(self._links)

    def close(self) -> None:
        self._closed.set()
        self.drop()
        self._server.close()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=2)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- forwarding ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                blackholed = self._blackholed
            upstream = None
            if not blackholed:
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    client.close()  # the server is down: the client sees the refusal
                    continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link, client, upstream), daemon=True,
                             name="faultproxy-up").start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(link, upstream, client), daemon=True,
                                 name="faultproxy-down").start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        """Copy source -> sink until either end closes; once the link is dead, read and discard."""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if link.dead or sink is None:
                    continue  # swallowed: no reply, no reset
                sink.sendall(data)
        except OSError:
            pass
        if not link.dead:
            # An orderly end on one side is passed on; a swallowed link stays silent.
            with self._lock:
                if link in self._links:
                    self._links.remove(link)
            link.close()
