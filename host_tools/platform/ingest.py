"""The platform's MQTT side: telemetry in (exactly once into the store), stop out.

``Ingestor(store, host, port)`` subscribes to ``evc/+/telemetry`` (QoS 1,
persistent session ``platform-ingest``: the broker keeps what arrives while
the platform is down) and to the chargers' ``state`` and ``cmd/result``.
Telemetry is acknowledged **after** it is in a Parquet file (paho manual
acks): a platform that dies before the write gets the batch again, and the
store drops the records it already has (``store.Ranges``).

The authenticated link (issue 13, C-2): with ``link_keys`` (charger id ->
``seclink.load_platform_keys``) the ingest is the platform's end of each
charger's link.  On ``evc/<id>/link`` it answers the handshake (REPLY on
``evc/<id>/link/down``), checks the charger's FINISH, opens sealed
telemetry batches (stored like plain ones, under the record numbers the
TCU gave them) and sealed command results.  A frame that does not open
(forged, tampered, replayed, a charger without the key) stores nothing and
is counted in ``link_refused``.  ``send_stop`` seals the stop for a charger
whose link is up; otherwise it goes plain on ``cmd/stop`` (marked so).
"""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from . import seclink as S
from . import wire as W

SEALED_AUTH = "sealed (C-2 link: mutual authentication, encrypted, sequence-numbered)"


class Ingestor:
    def __init__(self, store, host: str, port: int, prefix: str = W.PREFIX,
                 client_id: str = "platform-ingest", flush_s: float = 1.0,
                 link_keys: dict | None = None):
        self.store = store
        self.prefix = prefix
        self.flush_s = flush_s
        self.lock = threading.Lock()
        self.pending_acks: list[int] = []
        self.state: dict[int, dict] = {}
        self.results: list[tuple[int, dict]] = []
        self.errors = 0
        self.last_batch = 0.0
        self.link_keys = dict(link_keys or {})
        self.links: dict[int, S.PlatformEndpoint] = {}
        self.link_refused: dict[int, dict] = {}
        self.link_events: list[tuple[int, str, object]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=False, manual_ack=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self.connected = threading.Event()
        c.connect(host, port, keepalive=30)
        c.loop_start()
        if not self.connected.wait(10):
            raise ConnectionError("platform: no connection to the broker %s:%d" % (host, port))
        self.running = True
        self.thread = threading.Thread(target=self._flusher, daemon=True)
        self.thread.start()

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc == 0:
            p = self.prefix
            client.subscribe([(p + "/+/telemetry", 1), (p + "/+/state", 1),
                              (p + "/+/cmd/result", 1), (p + "/+/link", 1)])
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.split("/", 2)[-1]
        try:
            cid = W.charger_of(msg.topic)
            if kind == "telemetry":
                self.store.add_batch(msg.payload)
                self.last_batch = time.monotonic()
            elif kind == "state":
                self.state[cid] = json.loads(msg.payload)
            elif kind == "cmd/result":
                self.results.append((cid, json.loads(msg.payload)))
            elif kind == "link":
                self._link(cid, bytes(msg.payload))
        except (ValueError, IndexError):
            self.errors += 1
        if msg.qos:
            with self.lock:
                self.pending_acks.append(msg.mid)
            if kind not in ("telemetry", "link"):
                self._ack_all()             # (records: acknowledged once written)

    def _link(self, cid: int, payload: bytes) -> None:
        n0, boot, count = S.LINK_HDR.unpack_from(payload)
        frame = payload[S.LINK_HDR.size:]
        keys = self.link_keys.get(cid)
        if keys is None:
            self._refused(cid, "no keys")
            return
        ep = self.links.get(cid)
        if ep is None:
            ep = self.links[cid] = S.PlatformEndpoint(keys)
        what, val, answer = ep.uplink(frame)
        self.link_events.append((cid, what, val if what != "telemetry" else len(val)))
        if answer is not None:
            self.client.publish(W.topic(cid, "link/down", self.prefix), answer, qos=1)
        if what == "telemetry":
            recs = S.split_records(val)
            if len(recs) != count:
                raise ValueError("sealed batch: %d records, the TCU said %d" % (len(recs), count))
            self.store.add_batch(W.pack_batch(cid, n0, boot, recs))
            self.last_batch = time.monotonic()
        elif what == "result":
            self.results.append((cid, {"cmd": "sealed", "result": val, "auth": SEALED_AUTH}))
        elif what == "refused":
            self._refused(cid, val)

    def _refused(self, cid: int, why: str) -> None:
        d = self.link_refused.setdefault(cid, {})
        d[why] = d.get(why, 0) + 1

    def sealed(self, charger_id: int) -> bool:
        ep = self.links.get(charger_id)
        return ep is not None and ep.sealed

    def _ack_all(self):
        with self.lock:
            mids, self.pending_acks = self.pending_acks, []
        for mid in mids:
            self.client.ack(mid, 1)

    def flush(self) -> int:
        """Write what is buffered, then acknowledge it to the broker."""
        with self.lock:
            n = self.store.flush()
            mids, self.pending_acks = self.pending_acks, []
        for mid in mids:
            self.client.ack(mid, 1)
        return n

    def _flusher(self):
        while self.running:
            time.sleep(self.flush_s)
            self.flush()

    def send_stop(self, charger_id: int, alarm: dict | None = None, reason: str = "") -> str:
        """The platform's stop command (seed 000 4.2.3 b): sealed over the
        charger's link when it is up, else plain on ``cmd/stop`` (``auth``
        says which).  -> the ``auth`` text."""
        if self.sealed(charger_id):
            self.client.publish(W.topic(charger_id, "link/down", self.prefix),
                                self.links[charger_id].seal_stop(), qos=1)
            return SEALED_AUTH
        cmd = {"cmd": "stop", "charger_id": charger_id, "reason": reason,
               "alarm": alarm, "issued": time.time(), "auth": W.PLAIN_AUTH}
        self.client.publish(W.topic(charger_id, "cmd/stop", self.prefix),
                            json.dumps(cmd, default=str), qos=1)
        return W.PLAIN_AUTH

    def send_vin(self, charger_id: int, vin: str) -> None:
        """Authorise ``vin`` at the charger (``sec.vin_auth``), sealed."""
        self.client.publish(W.topic(charger_id, "link/down", self.prefix),
                            self.links[charger_id].seal_vin(vin), qos=1)

    def wait_idle(self, quiet_s: float = 0.5, timeout: float = 30.0) -> None:
        """Flush and acknowledge until no telemetry arrived for ``quiet_s``
        after the last flush (the broker holds back QoS-1 messages beyond
        its in-flight window until earlier ones are acknowledged)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            t0 = time.monotonic()
            self.flush()
            time.sleep(quiet_s)
            if self.last_batch < t0 and not self.pending_acks:
                break
        self.flush()

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
