"""python-can interface plugin ``sil``: the SIL firmware's CAN bus.

Registered through the ``can.interface`` entry point (setup.cfg), so any
python-can program attaches with the ordinary API::

    bus = can.Bus(interface="sil", channel="sim")              # in-process, lock-step
    bus = can.Bus(interface="sil", channel="127.0.0.1:29536")  # real-time, other process

``can.Logger``, ``can.Notifier``, ``python -m can.viewer -i sil -c 127.0.0.1:29536``
and the BMS simulator work unchanged.  ``Message.timestamp`` is the
firmware's clock: simulated seconds in lock-step; in real time Unix time
(the bench's start date + firmware time), for the firmware's frames the time
the firmware sent them, for other nodes' frames their arrival at the bench.
``Message.channel`` is 0 (one CAN segment: ASC channel 1, candump ``can0``)."""
from __future__ import annotations

import socket
import struct
import threading
import collections

import can
from can import BusABC, CanInitializationError, CanOperationError

from .hub import Endpoint, get_hub
from .link import EXT_FLAG, T_FRAME, T_FRAME_OUT


class SilBus(BusABC):
    def __init__(self, channel: str = "sim", receive_own_messages: bool = False,
                 can_filters=None, **kwargs):
        self.channel_info = "SIL bus %s" % channel
        self.channel = channel
        self._remote = None
        if ":" in str(channel):
            host, port = str(channel).rsplit(":", 1)
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise CanInitializationError("SIL bus is loopback-only")
            try:
                self._remote = socket.create_connection((host, int(port)), timeout=5)
            except OSError as e:
                raise CanInitializationError("cannot reach SIL hub at %s: %s" % (channel, e))
            self._remote.settimeout(None)
            self._remote.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._q: collections.deque = collections.deque()
            self._cond = threading.Condition()
            self._reader = threading.Thread(target=self._read_remote, daemon=True)
            self._reader.start()
            self._ep = None
        else:
            hub = get_hub(str(channel))
            if hub is None:
                raise CanInitializationError(
                    "no SIL simulation named %r in this process (start one with "
                    "host_tools.sil.Simulation, or use channel HOST:PORT for real-time mode)"
                    % channel)
            self._hub = hub
            self._ep = Endpoint(hub, receive_own=receive_own_messages)
            hub.attach(self._ep)
        super().__init__(channel=channel, can_filters=can_filters, **kwargs)

    def _read_remote(self) -> None:
        buf = bytearray()
        epoch0 = 0.0
        try:
            while True:
                chunk = self._remote.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
                    typ, n = buf[0], buf[1]
                    p = bytes(buf[2:2 + n])
                    del buf[:2 + n]
                    if typ == 0x88 and n >= 8:          # EPOCH: Unix time of t_ms 0
                        epoch0 = struct.unpack_from("<d", p, 0)[0]
                    if typ == T_FRAME_OUT and n >= 17:
                        t_ms, cid, dlc = struct.unpack_from("<IIB", p, 0)
                        dlc = min(dlc, 8)
                        msg = can.Message(timestamp=epoch0 + t_ms / 1000.0, arbitration_id=cid & 0x1FFFFFFF,
                                          is_extended_id=True, dlc=dlc, data=p[9:9 + dlc],
                                          is_rx=True, channel=0)
                        with self._cond:
                            self._q.append(msg)
                            self._cond.notify()
        except OSError:
            pass

    def _recv_internal(self, timeout):
        if self._ep is not None:
            return self._ep.get(timeout), False
        with self._cond:
            if not self._q and timeout != 0:
                self._cond.wait(timeout)
            return (self._q.popleft() if self._q else None), False

    def send(self, msg: can.Message, timeout=None) -> None:
        if not msg.is_extended_id:
            raise CanOperationError("GB/T 27930 uses 29-bit identifiers only")
        if self._ep is not None:
            self._hub.from_client(self._ep, msg)
            return
        d = bytes(msg.data[:8])
        self._remote.sendall(struct.pack("<BBIB", T_FRAME, 13, msg.arbitration_id | EXT_FLAG,
                                         len(d)) + d.ljust(8, b"\0"))

    def shutdown(self) -> None:
        super().shutdown()
        if self._ep is not None:
            self._hub.detach(self._ep)
        if self._remote is not None:
            try:
                self._remote.close()
            except OSError:
                pass

    @staticmethod
    def _detect_available_configs():
        return [{"interface": "sil", "channel": "sim"}]
