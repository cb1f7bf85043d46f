"""A software CAN bus segment: every frame goes to every other node.

The firmware is one node (through the SIL link), python-can ``SilBus``
instances are the others.  In lock-step mode the hub lives inside the
harness process and timestamps are simulated seconds; in real-time mode a
``HubServer`` also lets other processes join over TCP on loopback.
"""
from __future__ import annotations

import collections
import socket
import struct
import threading
import time
from typing import Callable

import can

from .link import EXT_FLAG, T_FRAME, T_FRAME_OUT

_HUBS: dict[str, "Hub"] = {}
_LOCK = threading.Lock()


class Endpoint:
    """One node's receive queue."""

    def __init__(self, hub: "Hub", receive_own=False, remote=None):
        self.hub = hub
        self.receive_own = receive_own
        self.queue: collections.deque[can.Message] = collections.deque()
        self.cond = threading.Condition()
        self.remote = remote            # a socket for TCP clients

    def put(self, msg: can.Message) -> None:
        if self.remote is not None:
            try:
                self.remote.sendall(_frame_out_packet(msg, self.hub.epoch0))
            except OSError:
                self.hub.detach(self)
            return
        with self.cond:
            self.queue.append(msg)
            self.cond.notify()

    def get(self, timeout: float | None) -> can.Message | None:
        with self.cond:
            if not self.queue:
                if timeout == 0:
                    return None
                self.cond.wait(timeout)
            return self.queue.popleft() if self.queue else None


T_EPOCH = 0x88      # hub -> client, first packet: f64 Unix time of t_ms = 0


def _epoch_packet(epoch0: float) -> bytes:
    return struct.pack("<BBd", T_EPOCH, 8, epoch0)


def _frame_out_packet(msg: can.Message, epoch0: float = 0.0) -> bytes:
    t_ms = int(round((msg.timestamp - epoch0) * 1000)) & 0xFFFFFFFF
    d = bytes(msg.data[:8])
    return struct.pack("<BBIIB", T_FRAME_OUT, 17, t_ms,
                       msg.arbitration_id | EXT_FLAG, len(d)) + d.ljust(8, b"\0")


class Hub:
    def __init__(self, name: str, clock: Callable[[], float] | None = None):
        self.name = name
        self.clock = clock or time.time
        self.endpoints: list[Endpoint] = []
        self.listeners: list[Callable[[can.Message], None]] = []
        self.to_firmware: collections.deque[can.Message] = collections.deque()
        self.lock = threading.RLock()
        self.wakeup: Callable[[], None] | None = None
        self.epoch0 = 0.0        # Unix time of timestamp "0" for TCP clients (real time)

    def attach(self, ep: Endpoint) -> None:
        with self.lock:
            self.endpoints.append(ep)

    def detach(self, ep: Endpoint) -> None:
        with self.lock:
            if ep in self.endpoints:
                self.endpoints.remove(ep)

    def publish(self, msg: can.Message, source: Endpoint | None = None) -> None:
        """Deliver a frame to every node but its sender (and to listeners)."""
        with self.lock:
            eps = list(self.endpoints)
            lst = list(self.listeners)
        for ep in eps:
            if ep is not source or ep.receive_own:
                ep.put(msg)
        for fn in lst:
            fn(msg)

    def from_client(self, ep: Endpoint | None, msg: can.Message) -> None:
        """A python-can node sent a frame: stamp it, show it, queue it for
        the firmware (delivered at the next step / immediately in real time)."""
        m = can.Message(timestamp=self.clock(), arbitration_id=msg.arbitration_id,
                        is_extended_id=True, dlc=msg.dlc, data=bytes(msg.data),
                        is_rx=True, channel=0)
        self.publish(m, ep)
        with self.lock:
            self.to_firmware.append(m)
        if self.wakeup:
            self.wakeup()

    def from_firmware(self, t_s: float, can_id: int, data: bytes) -> can.Message:
        m = can.Message(timestamp=t_s, arbitration_id=can_id, is_extended_id=True,
                        dlc=len(data), data=data, is_rx=True, channel=0)
        self.publish(m, None)
        return m

    def drain_to_firmware(self) -> list[can.Message]:
        with self.lock:
            out = list(self.to_firmware)
            self.to_firmware.clear()
        return out


def open_hub(name: str, clock: Callable[[], float] | None = None) -> Hub:
    with _LOCK:
        hub = Hub(name, clock)
        _HUBS[name] = hub
        return hub


def get_hub(name: str) -> Hub | None:
    with _LOCK:
        return _HUBS.get(name)


def close_hub(name: str) -> None:
    with _LOCK:
        _HUBS.pop(name, None)


class HubServer:
    """Lets other processes join a hub: ``can.Bus(interface="sil",
    channel="127.0.0.1:PORT")``.  Loopback only."""

    def __init__(self, hub: Hub, port: int = 0, host: str = "127.0.0.1"):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the SIL hub listens on loopback only")
        self.hub = hub
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.on_join = None            # called (no arguments) after a client joined
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.sendall(_epoch_packet(self.hub.epoch0))
            except OSError:
                conn.close()
                continue
            ep = Endpoint(self.hub, remote=conn)
            self.hub.attach(ep)
            threading.Thread(target=self._client, args=(conn, ep), daemon=True).start()
            if self.on_join is not None:
                try:
                    self.on_join()
                except Exception:       # a hook must not stop the accept loop
                    pass

    def _client(self, conn: socket.socket, ep: Endpoint) -> None:
        buf = bytearray()
        try:
            while self.running:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
                    typ, n = buf[0], buf[1]
                    payload = bytes(buf[2:2 + n])
                    del buf[:2 + n]
                    if typ == T_FRAME and n >= 13:
                        cid, dlc = struct.unpack_from("<IB", payload, 0)
                        dlc = min(dlc, 8)
                        self.hub.from_client(ep, can.Message(
                            arbitration_id=cid & 0x1FFFFFFF, is_extended_id=True,
                            dlc=dlc, data=payload[5:5 + dlc]))
        except OSError:
            pass
        finally:
            self.hub.detach(ep)
            conn.close()

    def close(self) -> None:
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
