"""BMS-side J1939-21 transport-protocol *sender* (RTS/CTS and BAM) with fault injection.

One ``TpSender`` per source/destination pair: J1939 allows one connection-mode
transfer at a time between two nodes, so ``start()`` refuses while busy and the
caller retries later (the simulator keeps the newest payload per PGN).

    sender = TpSender(send)                 # send(can_id: int, data: bytes)
    sender.start(now_ms, 0x0200, payload)   # RTS/CTS (or bam=True)
    sender.on_frame(now_ms, can_id, data)   # feed TP.CM frames from the peer
    sender.poll(now_ms)                     # sends due TP.DT frames, runs timers

Timers (J1939-21): T3 = 1250 ms for a CTS / EndOfMsgAck after the RTS or the
last TP.DT of a window, T4 = 1050 ms after a "hold" CTS (0 packets).  BAM
packets are spaced ``bam_gap_ms`` (J1939: 50..200 ms).  RTS/CTS packets are
spaced ``dt_gap_ms`` (0 = the whole window in one poll).

Fault injection (``TpFault``), applied to one transfer:

    wrong_seq   packet ``packet`` carries sequence number + ``value`` (default +1)
    duplicate   packet ``packet`` is sent twice
    missing     packet ``packet`` is skipped on first transmission (a CTS may re-request it)
    swap        packets ``packet`` and ``packet``+1 are sent in swapped order
    size        RTS/BAM total-size field is off by ``value`` (default +1)
    count       RTS/BAM packet-count field is off by ``value`` (default +1)
    abort       after packet ``packet`` (0 = right after the RTS) send Abort (reason ``value``, default 255)
    stall       after packet ``packet`` send nothing more and ignore CTS (peer must time out)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .codec import GLOBAL, PGN_TPCM, PGN_TPDT, can_id

CM_RTS = 0x10
CM_CTS = 0x11
CM_EOMA = 0x13
CM_BAM = 0x20
CM_ABORT = 0xFF

ABORT_BUSY = 1
ABORT_TIMEOUT = 3
ABORT_CTS_DURING_DT = 4
ABORT_UNSPECIFIED = 255

FAULT_KINDS = ("wrong_seq", "duplicate", "missing", "swap", "size", "count", "abort", "stall")


@dataclass
class TpTimers:
    t3_ms: int = 1250
    t4_ms: int = 1050


@dataclass
class TpFault:
    kind: str
    packet: int = 1
    value: Optional[int] = None

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError("unknown TP fault %r (known: %s)" % (self.kind, ", ".join(FAULT_KINDS)))


@dataclass
class TransferRecord:
    """What happened to one transfer (for checks and logs)."""
    pgn: int
    size: int
    packets: int
    bam: bool
    started_ms: int
    fault: Optional[TpFault] = None
    cts: List[tuple] = field(default_factory=list)      # (ms, count, next_seq)
    eoma_ms: Optional[int] = None
    eoma: Optional[tuple] = None                        # (size, packets) as acknowledged
    ended_ms: Optional[int] = None
    result: str = "running"     # ok | peer_abort | abort_sent | timeout | stalled | bad_cts
    abort_reason: Optional[int] = None
    retransmits: int = 0


class TpSender:
    def __init__(self, send: Callable[[int, bytes], None], sa: int = 0xF4, da: int = 0x56,
                 timers: Optional[TpTimers] = None, dt_gap_ms: int = 0, bam_gap_ms: int = 50,
                 max_per_cts: int = 0xFF, on_done: Optional[Callable[[TransferRecord], None]] = None):
        self._send = send
        self.sa, self.da = sa, da
        self.timers = timers or TpTimers()
        self.dt_gap_ms = dt_gap_ms
        self.bam_gap_ms = bam_gap_ms
        self.max_per_cts = max_per_cts
        self.on_done = on_done
        self.state = "idle"       # idle | wait_cts | sending | wait_ack | bam | stalled
        self.history: List[TransferRecord] = []
        self.rec: Optional[TransferRecord] = None
        self._payload = b""
        self._queue: List[int] = []      # sequence numbers still to send in this window
        self._sent = set()
        self._next_dt_ms = 0
        self._deadline = 0
        self._fault_used = False

    @property
    def busy(self) -> bool:
        return self.state != "idle"

    # ------------------------------------------------------------ frames out
    def _cm(self, data: bytes, da: Optional[int] = None) -> None:
        self._send(can_id(7, PGN_TPCM, self.da if da is None else da, self.sa), data)

    def _pgn3(self) -> bytes:
        return self.rec.pgn.to_bytes(3, "little")

    def _dt(self, seq: int, da: int) -> None:
        chunk = self._payload[(seq - 1) * 7: seq * 7]
        wire_seq = seq
        f = self._fault_once("wrong_seq", seq)
        if f:
            wire_seq = (seq + (1 if f.value is None else f.value)) & 0xFF
        data = bytes([wire_seq]) + chunk + b"\xff" * (7 - len(chunk))
        self._send(can_id(7, PGN_TPDT, da, self.sa), data)
        if seq in self._sent:
            self.rec.retransmits += 1
        self._sent.add(seq)
        if self._fault_once("duplicate", seq):
            self._send(can_id(7, PGN_TPDT, da, self.sa), data)

    def _fault_once(self, kind: str, seq: int) -> Optional[TpFault]:
        f = self.rec.fault if self.rec else None
        if f and f.kind == kind and f.packet == seq and not self._fault_used:
            self._fault_used = True
            return f
        return None

    # ------------------------------------------------------------ API
    def start(self, now_ms: int, pgn: int, payload: bytes, bam: bool = False,
              fault: Optional[TpFault] = None) -> bool:
        """Begin a transfer; False (nothing sent) while another one is running."""
        if self.busy:
            return False
        self._payload = bytes(payload)
        size = len(self._payload)
        npk = (size + 6) // 7
        self.rec = TransferRecord(pgn, size, npk, bam, now_ms, fault)
        self.history.append(self.rec)
        self._sent = set()
        self._fault_used = False
        wire_size, wire_npk = size, npk
        if fault and fault.kind == "size":
            wire_size = max(0, size + (1 if fault.value is None else fault.value))
        if fault and fault.kind == "count":
            wire_npk = max(0, npk + (1 if fault.value is None else fault.value)) & 0xFF
        if bam:
            self._cm(bytes([CM_BAM]) + wire_size.to_bytes(2, "little") + bytes([wire_npk, 0xFF])
                     + self._pgn3(), da=GLOBAL)
            self.state = "bam"
            self._queue = list(range(1, npk + 1))
            self._next_dt_ms = now_ms + self.bam_gap_ms
        else:
            self._cm(bytes([CM_RTS]) + wire_size.to_bytes(2, "little")
                     + bytes([wire_npk, self.max_per_cts & 0xFF]) + self._pgn3())
            self.state = "wait_cts"
            self._deadline = now_ms + self.timers.t3_ms
        self._fault_after(now_ms, 0)
        return True

    def on_frame(self, now_ms: int, cid: int, data: bytes) -> None:
        """Feed a TP.CM frame received from the peer (others are ignored)."""
        if ((cid >> 16) & 0xFF) != (PGN_TPCM >> 8) or (cid & 0xFF) != self.da or ((cid >> 8) & 0xFF) != self.sa:
            return
        if self.rec is None or self.state in ("idle", "bam") or len(data) < 8:
            return
        if int.from_bytes(bytes(data[5:8]), "little") != self.rec.pgn:
            return                                   # about another PGN: not ours
        ctl = data[0]
        if ctl == CM_ABORT:
            self._finish(now_ms, "peer_abort", data[1])
        elif self.state == "stalled":
            return
        elif ctl == CM_CTS:
            self._on_cts(now_ms, data[1], data[2])
        elif ctl == CM_EOMA:
            self.rec.eoma_ms = now_ms
            self.rec.eoma = (int.from_bytes(bytes(data[1:3]), "little"), data[3])
            self._finish(now_ms, "ok")

    def _on_cts(self, now_ms: int, count: int, nxt: int) -> None:
        self.rec.cts.append((now_ms, count, nxt))
        if self.state == "sending" and self._queue:
            self._abort(now_ms, ABORT_CTS_DURING_DT, "bad_cts")
            return
        if count == 0:                              # hold the connection open
            self.state = "wait_cts"
            self._deadline = now_ms + self.timers.t4_ms
            return
        if nxt < 1 or nxt + count - 1 > self.rec.packets:
            self._abort(now_ms, ABORT_UNSPECIFIED, "bad_cts")
            return
        self._queue = list(range(nxt, nxt + count))
        f = self.rec.fault
        if f and f.kind == "swap" and not self._fault_used and f.packet in self._queue[:-1]:
            i = self._queue.index(f.packet)
            self._queue[i], self._queue[i + 1] = self._queue[i + 1], self._queue[i]
            self._fault_used = True
        self.state = "sending"
        self._next_dt_ms = now_ms

    def poll(self, now_ms: int) -> None:
        if self.state in ("sending", "bam"):
            da = GLOBAL if self.state == "bam" else self.da
            gap = self.bam_gap_ms if self.state == "bam" else self.dt_gap_ms
            while self._queue and now_ms >= self._next_dt_ms:
                seq = self._queue.pop(0)
                if not self._fault_once("missing", seq):
                    self._dt(seq, da)
                if self._fault_after(now_ms, seq):
                    return
                if gap:
                    self._next_dt_ms = now_ms + gap
            if not self._queue:
                if self.state == "bam":
                    self._finish(now_ms, "ok")
                else:
                    self.state = "wait_ack"
                    self._deadline = now_ms + self.timers.t3_ms
        elif self.state in ("wait_cts", "wait_ack") and now_ms >= self._deadline:
            self._abort(now_ms, ABORT_TIMEOUT, "timeout")
        elif self.state == "stalled" and now_ms >= self._deadline:
            self._finish(now_ms, "stalled")

    def cancel(self, now_ms: int) -> None:
        """Give up the running transfer (sends Abort for RTS/CTS)."""
        if self.state in ("wait_cts", "sending", "wait_ack"):
            self._abort(now_ms, ABORT_UNSPECIFIED, "abort_sent")
        elif self.busy:
            self._finish(now_ms, "abort_sent")

    # ------------------------------------------------------------ internals
    def _fault_after(self, now_ms: int, seq: int) -> bool:
        f = self.rec.fault
        if not f or f.packet != seq or f.kind not in ("abort", "stall"):
            return False
        if f.kind == "abort":
            self._abort(now_ms, ABORT_UNSPECIFIED if f.value is None else f.value, "abort_sent")
        else:
            self.state = "stalled"
            self._queue = []
            # Stay busy (the peer sees a dead sender) until T3 plus margin, then forget it.
            self._deadline = now_ms + self.timers.t3_ms + 500
        return True

    def _abort(self, now_ms: int, reason: int, result: str) -> None:
        if not self.rec.bam:
            self._cm(bytes([CM_ABORT, reason & 0xFF, 0xFF, 0xFF, 0xFF]) + self._pgn3())
        self._finish(now_ms, result, reason)

    def _finish(self, now_ms: int, result: str, reason: Optional[int] = None) -> None:
        self.rec.result = result
        self.rec.ended_ms = now_ms
        self.rec.abort_reason = reason
        self.state = "idle"
        self._queue = []
        rec = self.rec
        if self.on_done:
            self.on_done(rec)
