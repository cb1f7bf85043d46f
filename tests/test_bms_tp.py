"""BMS-side transport sender: RTS/CTS, windows, EndOfMsgAck, Abort, timers, BAM, fault hooks.

The "charger" here is the test itself feeding TP.CM frames into ``on_frame``."""
import pytest

from host_tools.bms.tp import TpFault, TpSender

RTS_ID, DT_ID, CTS_ID = 0x1CEC56F4, 0x1CEB56F4, 0x1CECF456
BRM_PGN = 0x0200
PAYLOAD = bytes(range(49))                     # 7 packets


class Wire:
    def __init__(self):
        self.frames = []

    def __call__(self, cid, data):
        self.frames.append((cid, bytes(data)))

    def take(self):
        f, self.frames = self.frames, []
        return f


def cts(count, nxt, pgn=BRM_PGN):
    return bytes([0x11, count, nxt, 0xFF, 0xFF]) + pgn.to_bytes(3, "little")


def eoma(size=49, n=7, pgn=BRM_PGN):
    return bytes([0x13, size & 0xFF, size >> 8, n, 0xFF]) + pgn.to_bytes(3, "little")


def new(**kw):
    w = Wire()
    return TpSender(w, **kw), w


def test_rts_cts_full_transfer_bytes():
    s, w = new()
    assert s.start(0, BRM_PGN, PAYLOAD)
    assert w.take() == [(RTS_ID, bytes.fromhex("10310007FF000200"))]   # the spec's worked example
    assert not s.start(1, 0x0600, b"x" * 13)                            # one transfer at a time
    s.on_frame(10, CTS_ID, cts(7, 1))
    s.poll(10)
    dts = w.take()
    assert [cid for cid, _ in dts] == [DT_ID] * 7
    assert [d[0] for _, d in dts] == list(range(1, 8))
    assert b"".join(d[1:] for _, d in dts)[:49] == PAYLOAD
    assert dts[-1][1] == bytes([7]) + PAYLOAD[42:49]
    assert s.state == "wait_ack"
    s.on_frame(20, CTS_ID, eoma())
    assert not s.busy and s.history[-1].result == "ok" and s.history[-1].eoma == (49, 7)


def test_last_packet_padded_with_ff():
    s, w = new()
    s.start(0, 0x0600, bytes(13))
    assert w.take()[0][1] == bytes.fromhex("100D0002FF000600")
    s.on_frame(1, CTS_ID, cts(2, 1, 0x0600))
    s.poll(1)
    assert w.take()[1][1] == bytes([2]) + bytes(6) + b"\xff"


def test_window_of_two_and_retransmit_request():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    w.take()
    s.on_frame(5, CTS_ID, cts(2, 1))
    s.poll(5)
    assert [d[0] for _, d in w.take()] == [1, 2]
    s.on_frame(10, CTS_ID, cts(2, 2))          # peer asks again for 2 (retransmission) and 3
    s.poll(10)
    assert [d[0] for _, d in w.take()] == [2, 3]
    assert s.history[-1].retransmits == 1


def test_dt_gap_spaces_packets():
    s, w = new(dt_gap_ms=5)
    s.start(0, BRM_PGN, PAYLOAD)
    w.take()
    s.on_frame(0, CTS_ID, cts(7, 1))
    sent_at = []
    for t in range(0, 60):
        s.poll(t)
        sent_at += [t for _ in w.take()]
    assert sent_at == [0, 5, 10, 15, 20, 25, 30]


def test_t3_timeout_without_cts_sends_abort_reason_3():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    w.take()
    s.poll(1249)
    assert s.busy and w.take() == []
    s.poll(1250)
    assert w.take() == [(RTS_ID, bytes([0xFF, 3, 0xFF, 0xFF, 0xFF, 0x00, 0x02, 0x00]))]
    assert s.history[-1].result == "timeout" and not s.busy


def test_hold_cts_uses_t4():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    s.on_frame(500, CTS_ID, cts(0, 1))          # hold
    s.poll(1300)                                 # > T3 from RTS but < T4 from the hold
    assert s.busy
    s.poll(1549)
    assert s.busy
    s.poll(1550)
    assert not s.busy and s.history[-1].result == "timeout"


def test_peer_abort_and_foreign_pgn_cts():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    s.on_frame(1, CTS_ID, cts(7, 1, pgn=0x0600))       # about another PGN: ignored
    s.poll(1)
    assert s.state == "wait_cts"
    s.on_frame(2, CTS_ID, bytes([0xFF, 2, 0xFF, 0xFF, 0xFF, 0x00, 0x02, 0x00]))
    assert not s.busy and s.history[-1].result == "peer_abort" and s.history[-1].abort_reason == 2


@pytest.mark.parametrize("count,nxt", [(3, 0), (3, 6), (9, 1)])
def test_malformed_cts_aborts(count, nxt):
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    w.take()
    s.on_frame(5, CTS_ID, cts(count, nxt))
    assert w.take()[0][1][0] == 0xFF
    assert s.history[-1].result == "bad_cts"


def test_short_cts_is_ignored_then_times_out():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD)
    s.on_frame(5, CTS_ID, bytes([0x11, 7, 1]))
    s.poll(5)
    assert s.state == "wait_cts"


def test_bam_spacing_and_global_destination():
    s, w = new(bam_gap_ms=50)
    s.start(0, 0x1500, bytes(20), bam=True)
    frames = []
    for t in range(0, 400, 10):
        s.poll(t)
        frames += [(t, cid, d) for cid, d in w.take()]
    assert frames[0][1] == 0x1CECFFF4 and frames[0][2] == bytes.fromhex("20140003FF001500")
    assert [(t, d[0]) for t, cid, d in frames[1:]] == [(50, 1), (100, 2), (150, 3)]
    assert all(cid == 0x1CEBFFF4 for _, cid, _ in frames[1:])
    assert not s.busy and s.history[-1].result == "ok"


def _run_fault(fault, window=7):
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD, fault=fault)
    rts = w.take()
    s.on_frame(1, CTS_ID, cts(window, 1))
    s.poll(1)
    return s, rts, w.take()


def test_fault_wrong_seq():
    _, _, dts = _run_fault(TpFault("wrong_seq", 4))
    assert [d[0] for _, d in dts] == [1, 2, 3, 5, 5, 6, 7]


def test_fault_duplicate_missing_swap():
    assert [d[0] for _, d in _run_fault(TpFault("duplicate", 2))[2]] == [1, 2, 2, 3, 4, 5, 6, 7]
    assert [d[0] for _, d in _run_fault(TpFault("missing", 3))[2]] == [1, 2, 4, 5, 6, 7]
    assert [d[0] for _, d in _run_fault(TpFault("swap", 5))[2]] == [1, 2, 3, 4, 6, 5, 7]


def test_fault_size_and_count_in_rts():
    _, rts, _ = _run_fault(TpFault("size", value=-2))
    assert rts[0][1][1:4] == bytes([47, 0, 7])
    _, rts, _ = _run_fault(TpFault("count", value=1))
    assert rts[0][1][1:4] == bytes([49, 0, 8])


def test_fault_abort_mid_transfer():
    s, _, dts = _run_fault(TpFault("abort", 3, value=2))
    assert [d[0] for _, d in dts[:3]] == [1, 2, 3]
    assert dts[3] == (RTS_ID, bytes([0xFF, 2, 0xFF, 0xFF, 0xFF, 0x00, 0x02, 0x00]))
    assert not s.busy and s.history[-1].result == "abort_sent"


def test_fault_stall_goes_silent():
    s, w = new()
    s.start(0, BRM_PGN, PAYLOAD, fault=TpFault("stall", 2))
    w.take()
    s.on_frame(1, CTS_ID, cts(7, 1))
    s.poll(1)
    assert [d[0] for _, d in w.take()] == [1, 2]
    s.on_frame(500, CTS_ID, cts(5, 3))         # the peer asks again: no answer
    s.poll(500)
    assert w.take() == [] and s.busy
    s.poll(5000)
    assert not s.busy and s.history[-1].result == "stalled" and w.take() == []


def test_unknown_fault_rejected():
    with pytest.raises(ValueError):
        TpFault("teleport")
