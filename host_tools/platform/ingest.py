"""The platform's MQTT side: telemetry in (exactly once into the store), stop out.

``Ingestor(store, host, port)`` subscribes to ``evc/+/telemetry`` (QoS 1,
persistent session ``platform-ingest``: the broker keeps what arrives while
the platform is down) and to the chargers' ``state`` and ``cmd/result``.
Telemetry is acknowledged **after** it is in a Parquet file (paho manual
acks): a platform that dies before the write gets the batch again, and the
store drops the records it already has (``store.Ranges``).
"""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from . import wire as W


class Ingestor:
    def __init__(self, store, host: str, port: int, prefix: str = W.PREFIX,
                 client_id: str = "platform-ingest", flush_s: float = 1.0):
        self.store = store
        self.prefix = prefix
        self.flush_s = flush_s
        self.lock = threading.Lock()
        self.pending_acks: list[int] = []
        self.state: dict[int, dict] = {}
        self.results: list[tuple[int, dict]] = []
        self.errors = 0
        self.last_batch = 0.0
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
                              (p + "/+/cmd/result", 1)])
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
        except (ValueError, IndexError):
            self.errors += 1
        if msg.qos:
            with self.lock:
                self.pending_acks.append(msg.mid)
            if kind != "telemetry":
                self._ack_all()

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

    def send_stop(self, charger_id: int, alarm: dict | None = None, reason: str = "") -> None:
        """The platform's stop command (seed 000 4.2.3 b).  PLAIN topic: not
        authenticated until the security issue lands (``auth`` says so)."""
        cmd = {"cmd": "stop", "charger_id": charger_id, "reason": reason,
               "alarm": alarm, "issued": time.time(), "auth": W.PLAIN_AUTH}
        self.client.publish(W.topic(charger_id, "cmd/stop", self.prefix),
                            json.dumps(cmd, default=str), qos=1)

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
