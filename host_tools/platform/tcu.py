"""The charger side of the platform link: a TCU (telematics unit) stand-in.

A charger's telemetry channel (the UART on a board, the SIL link's TELEMETRY
packets on the bench) goes into the TCU, which

* numbers every record (``n``, per charger, from 0, never wraps) and keeps it
  in an on-board **ring** on its filesystem (``Ring``: segment files plus the
  number of the first record the broker has not acknowledged),
* publishes batches to ``evc/<id>/telemetry`` with QoS 1 while the broker is
  reachable, at most ``window`` batches unacknowledged; a PUBACK moves the
  acknowledged mark, and fully acknowledged segments are deleted,
* while offline keeps everything in the ring (up to ``capacity`` records; a
  longer outage loses the oldest, and the platform sees the gap), and on
  reconnect sends from the first unacknowledged record: **catch-up without
  loss**; a batch sent twice (lost PUBACK, reconnect) carries the same ``n``
  and the platform stores it once: **no duplicates**,
* counts charger restarts (``boot``: the record ``seq`` went backwards),
* receives the platform's commands on ``evc/<id>/cmd/stop`` and hands them to
  the charger (``on_stop``; ``SilCharger`` types ``stop()`` at the firmware's
  console, as the field engineer would) and answers on ``cmd/result``.

With the authenticated link (issue 13, C-2; docs/security.md "C-2 in
service") the charger's telemetry channel also carries **link frames**
(first byte ``0xEC``: a handshake message, a sealed telemetry batch of
``count`` records, a sealed command result).  The TCU cannot open them: it
gives a sealed batch the next ``count`` record numbers (so sealed and plain
records share one numbering and the platform's exactly-once store), and
publishes every link frame, in order, on ``evc/<id>/link`` (QoS 1;
``seclink.LINK_HDR`` first_n, boot, count, then the frame), resending after
a reconnect what was not acknowledged.  What the platform sends back on
``evc/<id>/link/down`` (its handshake REPLY, a sealed stop or VIN
authorisation) goes to ``on_link`` (``SilCharger`` types ``link("<hex>")``
at the firmware's console).  Link frames wait on disk like the records
(``linklog.LinkLog``): after a TCU restart the unacknowledged ones are sent
again, in order, and the record numbers given to sealed batches are not
given again.

A plain stop on ``cmd/stop`` still goes to ``on_stop``; the charger obeys
it only when its ``sec.policy`` allows (not under require).
"""
from __future__ import annotations

import collections
import json
import os
import struct
import threading
import time
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from . import wire as W
from .linklog import LinkLog
from .seclink import LINK_HDR, LINK_MAGIC

_ENT = struct.Struct("<QI")      # n, boot; then the record (self-delimiting)


class Ring:
    """Records waiting for the broker's acknowledgement, on disk."""

    def __init__(self, path, capacity: int = 2_000_000, seg_records: int = 65536,
                 first_n: int = 0, boot: int = 0):
        """``first_n``/``boot``: where a new ring starts counting (a TCU that
        replaces one with history); ignored when the ring has a state."""
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self.seg_records = seg_records
        self.pending: collections.deque = collections.deque()   # (n, boot, rec), n >= acked
        self.lost = 0
        self.acked = 0
        self.next_n = 0
        self.boot = 0
        self.last_seq = None
        self._fh = None
        self._seg_first = None
        self._seg_count = 0
        ack = self.dir / "acked"
        self.boot = boot
        if not ack.exists():
            self.acked = first_n
        if ack.exists():
            self.acked = int(ack.read_text().split()[0])
        self.next_n = self.acked
        for seg in sorted(self.dir.glob("seg-*.bin")):
            data = seg.read_bytes()
            off = 0
            while off + _ENT.size + 4 <= len(data):
                n, boot = _ENT.unpack_from(data, off)
                size = data[off + _ENT.size + 3]
                rec = data[off + _ENT.size: off + _ENT.size + size]
                if len(rec) < size or size < 4:
                    break                              # torn tail
                off += _ENT.size + size
                if n >= self.acked:
                    self.pending.append((n, boot, rec))
                self.next_n = max(self.next_n, n + 1)
                self.boot = boot
                self.last_seq = rec[4] | (rec[5] << 8)
        self._gc()

    def append(self, rec: bytes) -> int:
        rec = bytes(rec)
        seq = rec[4] | (rec[5] << 8)
        if self.last_seq is not None and ((seq - self.last_seq) & 0xFFFF) > 0x8000:
            self.boot += 1                              # the charger restarted
        self.last_seq = seq
        n = self.next_n
        self.next_n += 1
        if self._fh is None or self._seg_count >= self.seg_records:
            if self._fh:
                self._fh.close()
            self._seg_first = n
            self._seg_count = 0
            self._fh = open(self.dir / ("seg-%016d.bin" % n), "ab")
        self._fh.write(_ENT.pack(n, self.boot) + rec)
        self._seg_count += 1
        self.pending.append((n, self.boot, rec))
        while len(self.pending) > self.capacity:       # outage longer than the ring
            self.pending.popleft()
            self.lost += 1
            self.acked += 1
        return n

    def reserve(self, count: int) -> int:
        """The next ``count`` record numbers, for a sealed batch (no entry)."""
        n = self.next_n
        self.next_n += count
        return n

    def sync(self) -> None:
        if self._fh:
            self._fh.flush()

    def ack_to(self, n: int) -> None:
        """Everything below ``n`` is acknowledged."""
        if n <= self.acked:
            return
        while self.pending and self.pending[0][0] < n:
            self.pending.popleft()
        self.acked = n
        tmp = self.dir / "acked.tmp"
        tmp.write_text("%d\n" % n)
        os.replace(tmp, self.dir / "acked")
        self._gc()

    def _gc(self) -> None:
        segs = sorted(self.dir.glob("seg-*.bin"))
        for a, b in zip(segs, segs[1:]):
            if int(b.stem[4:]) <= self.acked:
                a.unlink()

    def take(self, start: int, max_count: int) -> list:
        """Pending entries from ``start`` (same boot, contiguous)."""
        out = []
        if not self.pending:
            return out
        i = start - self.pending[0][0]
        if i < 0:
            i = 0
        if i >= len(self.pending) or self.pending[i][0] != start:
            # numbers reserved for sealed link frames (``reserve``) make
            # gaps: find the first entry at or after ``start``
            lo, hi = 0, len(self.pending)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.pending[mid][0] < start:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo
        boot = None
        while i < len(self.pending) and len(out) < max_count:
            e = self.pending[i]
            if boot is None:
                boot = e[1]
            elif e[1] != boot or e[0] != out[-1][0] + 1:
                break
            out.append(e)
            i += 1
        return out

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None


class Tcu:
    """Ring + MQTT publisher + command receiver of one charger."""

    def __init__(self, charger_id: int, host: str, port: int, ring_dir, prefix: str = W.PREFIX,
                 batch_max: int = 200, window: int = 16, capacity: int = 2_000_000,
                 on_stop: Callable[[dict], str] | None = None, first_n: int = 0, boot: int = 0,
                 on_link: Callable[[bytes], None] | None = None):
        self.cid = charger_id
        self.prefix = prefix
        self.ring = Ring(ring_dir, capacity, first_n=first_n, boot=boot)
        self.batch_max = batch_max
        self.window = window
        self.on_stop = on_stop
        self.on_link = on_link
        self.link_q: collections.deque = collections.deque()   # (lo, hi, payload, k) not acknowledged
        self.link_sent = 0                # link_q entries published since the (re)connect
        self.link_inflight: dict[int, tuple] = {}
        self.downlink: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.connected = False
        self.offline = False
        self.inflight: dict[int, tuple[int, int]] = {}   # mid -> (lo, hi)
        self.done: dict[int, int] = {}                    # lo -> hi, acknowledged but not contiguous
        self.early: set = set()
        self.gen = 0
        # the link frames of before a restart: queued again, their numbers kept
        self.links = LinkLog(ring_dir)
        self.ring.next_n = max(self.ring.next_n, self.links.next_n)
        for lo, hi in self.links.done:
            if lo >= self.ring.acked:
                self._acked((lo, hi))
        for k, lo, hi, payload in self.links.queued:
            self.link_q.append((lo, hi, payload, k))
        self.send_n = self.ring.acked
        self.catchup_until = self.ring.next_n
        self.published = 0
        self.commands: collections.deque = collections.deque()
        self.results: list = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tcu-%d" % charger_id,
                        clean_session=False)
        c.max_inflight_messages_set(window + 4)
        c.max_queued_messages_set(0)
        c.will_set(self.topic("state"), json.dumps({"online": False}), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c
        self.host, self.port = host, port
        c.connect_async(host, port, keepalive=30)
        c.loop_start()

    def topic(self, kind: str) -> str:
        return W.topic(self.cid, kind, self.prefix)

    # ---- paho callbacks (network thread) -----------------------------------
    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc != 0:
            return
        client.subscribe([(self.topic("cmd/stop"), 1), (self.topic("link/down"), 1)])
        client.publish(self.topic("state"), json.dumps({"online": True, "next_n": self.ring.next_n}),
                       qos=1, retain=True)
        with self.lock:
            self.connected = True
            self.inflight.clear()
            # (``done`` is kept: a range the broker acknowledged stays
            # acknowledged, and a sealed batch acknowledged before the
            # reconnect is not sent again to fill it in)
            self.early.clear()
            self.gen += 1
            self.send_n = self.ring.acked          # resend what was not acknowledged
            self.catchup_until = self.ring.next_n
            self.link_sent = 0
            self.link_inflight.clear()

    def _on_disconnect(self, client, userdata, flags, rc, props=None):
        with self.lock:
            self.connected = False

    def _on_publish(self, client, userdata, mid, rc=None, props=None):
        with self.lock:
            e = self.link_inflight.pop(mid, None)
            if e is not None:
                self._link_acked(e)
                return
            r = self.inflight.pop(mid, None)
            if r is None:
                self.early.add(mid)          # PUBACK before pump() registered the mid
                return
            self._acked(r)

    def _acked(self, r):
        self.done[r[0]] = r[1]
        a = self.ring.acked
        while a in self.done:
            a = self.done.pop(a)
        self.ring.ack_to(a)

    def _link_acked(self, e):
        try:
            self.link_q.remove(e)
            self.link_sent -= 1
        except ValueError:
            return
        if e[1] > e[0]:
            self._acked((e[0], e[1]))
        self.links.ack(e[3], self.done.items())

    def _on_message(self, client, userdata, msg):
        if msg.topic.endswith("/link/down"):
            self.downlink.append(bytes(msg.payload))
            return
        try:
            cmd = json.loads(msg.payload)
        except ValueError:
            cmd = {"cmd": "?", "raw": msg.payload.decode(errors="replace")}
        self.commands.append(cmd)

    # ---- charger side (caller's thread) -------------------------------------
    def add(self, rec: bytes) -> int:
        """A telemetry write of the charger: a record (into the ring), or a
        link frame (``0xEC``, count, frame: numbered and queued for
        ``evc/<id>/link``).  -> the record number (the first, for a batch)."""
        with self.lock:
            if rec[0] == LINK_MAGIC:
                count = rec[1]
                lo = self.ring.reserve(count)
                payload = LINK_HDR.pack(lo, self.ring.boot, count) + bytes(rec[2:])
                k = self.links.add(lo, lo + count, self.ring.boot, payload)
                self.link_q.append((lo, lo + count, payload, k))
                return lo
            return self.ring.append(rec)

    def pump(self) -> int:
        """Publish what the window allows; handle received commands.
        Returns batches published."""
        sent = 0
        # paho's publish() must not run under self.lock: its network thread
        # holds paho's own locks while it calls _on_publish (which takes ours)
        while not self.offline:
            with self.lock:
                self.ring.sync()
                if not self.connected or len(self.inflight) + sent >= self.window + 4 \
                        or len(self.inflight) >= self.window:
                    break
                ents = self.ring.take(self.send_n, self.batch_max)
                if not ents:
                    break
                lo = ents[0][0]
                hi = lo + len(ents)
                payload = W.pack_batch(self.cid, lo, ents[0][1], [e[2] for e in ents],
                                       catchup=lo < self.catchup_until)
                gen = self.gen
                self.send_n = hi
            info = self.client.publish(self.topic("telemetry"), payload, qos=1)
            with self.lock:
                if gen != self.gen:          # reconnected meanwhile: resent from acked anyway
                    break
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.send_n = min(self.send_n, lo)
                    break
                if info.mid in self.early:
                    self.early.discard(info.mid)
                    self._acked((lo, hi))
                else:
                    self.inflight[info.mid] = (lo, hi)
                self.published += 1
                sent += 1
        while not self.offline:
            with self.lock:
                if not self.connected or self.link_sent >= len(self.link_q):
                    break
                e = self.link_q[self.link_sent]
                self.link_sent += 1
                gen = self.gen
            info = self.client.publish(self.topic("link"), e[2], qos=1)
            with self.lock:
                if gen != self.gen:
                    break
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.link_sent -= 1
                    break
                if info.mid in self.early:
                    self.early.discard(info.mid)
                    self._link_acked(e)
                else:
                    self.link_inflight[info.mid] = e
        while self.downlink:
            f = self.downlink.popleft()
            if self.on_link is not None:
                self.on_link(f)
        while self.commands:
            cmd = self.commands.popleft()
            result = "unknown command"
            if cmd.get("cmd") == "stop" and self.on_stop is not None:
                result = self.on_stop(cmd)
            self.results.append((cmd, result))
            self.client.publish(self.topic("cmd/result"), json.dumps(
                {"cmd": cmd.get("cmd"), "alarm": cmd.get("alarm"), "result": result}), qos=1)
        return sent

    def backlog(self) -> int:
        """Records (and link frames) not acknowledged by the broker yet."""
        return self.ring.next_n - self.ring.acked + len(self.link_q)

    def set_offline(self, offline: bool) -> None:
        """Simulate losing / regaining the network."""
        if offline and not self.offline:
            self.offline = True
            self.client.disconnect()
            self.client.loop_stop()          # a user disconnect ends paho's loop thread
        elif not offline and self.offline:
            self.offline = False
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()

    def drain(self, timeout: float = 30.0) -> bool:
        """Pump until the broker acknowledged every record."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump()
            if self.backlog() == 0:
                return True
            time.sleep(0.005)
        return False

    def close(self):
        try:
            self.client.publish(self.topic("state"), json.dumps({"online": False}), qos=1,
                                retain=True).wait_for_publish(2)
        except Exception:       # not connected: the broker publishes the will
            pass
        self.client.disconnect()
        self.client.loop_stop()
        self.ring.close()
        self.links.close()
