"""gbt.transport on the real micropython binary: J1939-21 TP receive side.

Every test drives TransportReceiver with CAN frames as a BMS (0xF4) would put
them on the bus and checks the frames the charger answers with (exact bytes,
id 0x1CECF456) and the timing in simulated ms.  docs/transport.md maps each
malformed sequence to the test that covers it.
"""
import mptest
from mptest import eq, true

import config
from gbt import transport as tp
from gbt.transport import TransportReceiver
from gbt.intrusion import IntrusionMonitor, IX_TP_TRICKLE, IX_TP_PREEMPT

RX_CM = 0x1CEC56F4      # BMS -> charger TP.CM
RX_DT = 0x1CEB56F4      # BMS -> charger TP.DT
BAM_CM = 0x1CECFFF4     # BMS -> global TP.CM (BAM)
BAM_DT = 0x1CEBFFF4
TX_CM = 0x1CECF456      # charger -> BMS TP.CM

BRM = bytes(range(0x30, 0x30 + 49))
BCP = bytes(range(0xA0, 0xA0 + 13))
BCS = bytes(range(0x10, 0x10 + 9))


class Bus:
    """Fake board CAN send: records frames; ``ok = False`` = TX queue full."""

    def __init__(self):
        self.out = []
        self.ok = True

    def send(self, cid, buf, n):
        if not self.ok:
            return False
        self.out.append((cid, bytes(buf[:n])))
        return True

    def take(self):
        o = self.out
        self.out = []
        return o


def mk(cfg=None, **kw):
    bus = Bus()
    return TransportReceiver(bus.send, cfg=cfg, **kw), bus


def cm(ctrl, b1, b2, b3, b4, pgn):
    return bytes([ctrl, b1, b2, b3, b4, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])


def rts(size, pgn=0x0200, npk=None, maxpk=0xFF):
    if npk is None:
        npk = (size + 6) // 7
    return cm(0x10, size & 0xFF, size >> 8, npk, maxpk, pgn)


def bam(size, pgn=0x0200, npk=None):
    if npk is None:
        npk = (size + 6) // 7
    return cm(0x20, size & 0xFF, size >> 8, npk, 0xFF, pgn)


def cts(n, nxt, pgn=0x0200):
    return cm(0x11, n, nxt, 0xFF, 0xFF, pgn)


def eoma(size, pgn=0x0200):
    return cm(0x13, size & 0xFF, size >> 8, (size + 6) // 7, 0xFF, pgn)


def abort(reason, pgn=0x0200):
    return cm(0xFF, reason, 0xFF, 0xFF, 0xFF, pgn)


def dt(msg, seq, fill=0xFF):
    d = bytearray(8)
    d[0] = seq
    for i in range(7):
        j = (seq - 1) * 7 + i
        d[1 + i] = msg[j] if j < len(msg) else fill
    return bytes(d)


def feed(r, t, cid, data, n=None):
    return r.on_frame(t, cid, bytearray(data), len(data) if n is None else n)


def send_all(r, msg, t=0, first=1, cid=RX_DT):
    """Feed packets first..last at 1 ms spacing; returns on_frame results."""
    res = []
    for s in range(first, (len(msg) + 6) // 7 + 1):
        res.append(feed(r, t + s, cid, dt(msg, s)))
    return res


def got(r):
    return bytes(r.buf[:r.length])


# ------------------------------------------------------------------ normal

def test_brm_rts_cts_data_eoma_exact_bytes():
    r, bus = mk()
    eq(feed(r, 0, RX_CM, rts(49)), 0, "rts returns 0")
    eq(bus.take(), [(TX_CM, bytes.fromhex("110701ffff000200"))], "CTS all 7")
    res = send_all(r, BRM)
    eq(res, [0] * 6 + [0x0200], "pgn only on last packet")
    eq(got(r), BRM, "payload")
    eq(bus.take(), [(TX_CM, bytes.fromhex("13310007ff000200"))], "EndOfMsgAck")
    eq((r.completed, r.errors, r.aborts_sent, r.state), (1, 0, 0, tp.S_IDLE), "counters")


def test_bcp_and_bcs_back_to_back():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(13, 0x0600))
    eq(send_all(r, BCP, 0)[-1], 0x0600, "BCP done")
    eq(got(r), BCP, "BCP bytes")
    feed(r, 10, RX_CM, rts(9, 0x1100))
    eq(send_all(r, BCS, 10)[-1], 0x1100, "BCS done")
    eq(got(r), BCS, "BCS bytes")
    eq(bus.take(), [(TX_CM, bytes.fromhex("110201ffff000600")),
                    (TX_CM, bytes.fromhex("130d0002ff000600")),
                    (TX_CM, bytes.fromhex("110201ffff001100")),
                    (TX_CM, bytes.fromhex("13090002ff001100"))], "frames")


def test_cts_window_from_config_re_cts_per_window():
    r, bus = mk({"tp.cts_window": 3})
    feed(r, 0, RX_CM, rts(49))
    eq(bus.take(), [(TX_CM, cts(3, 1))], "first window")
    send_all(r, BRM[:21])          # packets 1..3
    eq(bus.take(), [(TX_CM, cts(3, 4))], "second window after packet 3")
    for s in (4, 5, 6):
        feed(r, 10 + s, RX_DT, dt(BRM, s))
    eq(bus.take(), [(TX_CM, cts(1, 7))], "last window: only what is left")
    eq(feed(r, 20, RX_DT, dt(BRM, 7)), 0x0200, "done")
    eq(got(r), BRM, "bytes")
    eq(bus.take(), [(TX_CM, eoma(49))], "eoma")


def test_rts_max_packets_per_cts_honoured():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49, maxpk=2))
    eq(bus.take(), [(TX_CM, cts(2, 1))], "RTS byte 5 limits the window")
    send_all(r, BRM)
    eq([f[1][:3] for f in bus.take()],
       [bytes([0x11, 2, 3]), bytes([0x11, 2, 5]), bytes([0x11, 1, 7]), bytes([0x13, 49, 0])],
       "windows 2,2,2,1 then EOMA")


def test_rts_max_packets_zero_means_no_limit():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49, maxpk=0))
    eq(bus.take(), [(TX_CM, cts(7, 1))], "0 treated as no limit")


def test_largest_message_1785_bytes_255_packets():
    r, bus = mk()
    msg = bytes((i * 7 + 3) & 0xFF for i in range(1785))
    feed(r, 0, RX_CM, rts(1785, 0x1500))
    eq(bus.take(), [(TX_CM, cm(0x11, 255, 1, 0xFF, 0xFF, 0x1500))], "CTS 255")
    eq(send_all(r, msg)[-1], 0x1500, "BMV done")
    eq(got(r), msg, "bytes")
    eq(bus.take(), [(TX_CM, cm(0x13, 0xF9, 0x06, 255, 0xFF, 0x1500))], "EOMA")


def test_pgn_with_destination_in_ps_is_normalised():
    # some stacks put the DA into the PS byte of a PDU1 PGN: 0x000256
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49, 0x000256))
    eq(bus.take(), [(TX_CM, cm(0x11, 7, 1, 0xFF, 0xFF, 0x000256))], "CTS echoes PGN")
    eq(send_all(r, BRM)[-1], 0x0200, "delivered as BRM")


def test_buffer_holds_message_until_next_call_and_no_bytes_past_length():
    r, bus = mk(size=64)
    for i in range(64):
        r.buf[i] = 0x5A
    feed(r, 0, RX_CM, rts(9, 0x1100))
    send_all(r, BCS)
    eq(r.length, 9, "length")
    eq(bytes(r.buf[9:14]), b"\x5a" * 5, "padding never copied")


def test_last_packet_padding_not_checked():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(13, 0x0600))
    feed(r, 1, RX_DT, dt(BCP, 1))
    eq(feed(r, 2, RX_DT, dt(BCP, 2, fill=0x00)), 0x0600, "zero padding accepted")
    eq(got(r), BCP, "bytes")
    eq(r.errors, 0, "not an error")


# ------------------------------------------------------------------ BAM

def test_bam_received_without_cts():
    r, bus = mk()
    eq(feed(r, 0, BAM_CM, bam(13, 0x0600)), 0, "bam")
    res = []
    for s in (1, 2):
        res.append(feed(r, 50 * s, BAM_DT, dt(BCP, s)))
    eq(res, [0, 0x0600], "done on last packet")
    eq(got(r), BCP, "bytes")
    eq(bus.take(), [], "BAM is never answered")


def test_bam_t1_between_packets():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(49))
    feed(r, 200, BAM_DT, dt(BRM, 1))
    r.poll(950)                      # exactly T1 after packet 1: still open
    eq(r.state, tp.S_BAM, "open at T1")
    r.poll(951)
    eq((r.state, r.last_error), (tp.S_IDLE, tp.E_TIMEOUT), "dropped after T1")
    eq(bus.take(), [], "no Abort for a broadcast")


def test_bam_t1_before_first_packet():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(49))
    r.poll(751)
    eq(r.state, tp.S_IDLE, "dropped")
    eq(feed(r, 752, BAM_DT, dt(BRM, 1)), 0, "late packet")
    eq(r.last_error, tp.E_NO_SESSION, "no session")


def test_bam_gap_dropped_silently():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(49))
    feed(r, 1, BAM_DT, dt(BRM, 1))
    feed(r, 2, BAM_DT, dt(BRM, 3))
    eq((r.state, r.last_error), (tp.S_IDLE, tp.E_SEQ), "dropped")
    eq(bus.take(), [], "silent")


def test_bam_invalid_ignored_without_abort():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(49, npk=3))
    feed(r, 0, BAM_CM, bam(49, 0x1234))
    feed(r, 0, BAM_CM, bam(5000, npk=255))
    eq((r.state, r.errors, bus.take()), (tp.S_IDLE, 3, []), "ignored")


def test_bam_to_specific_address_ignored():
    r, bus = mk()
    feed(r, 0, RX_CM, bam(13, 0x0600))        # BAM must go to 0xFF
    eq((r.state, r.last_error, bus.take()), (tp.S_IDLE, tp.E_ADDR, []), "ignored")


def test_bam_while_rts_session_ignored():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, BAM_CM, bam(13, 0x0600))
    eq((r.state, r.last_error, bus.take()), (tp.S_CMDT, tp.E_BUSY, []), "kept RTS")
    eq(send_all(r, BRM, 2)[-1], 0x0200, "RTS transfer completes")


def test_rts_replaces_open_bam():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(13, 0x0600))
    feed(r, 1, BAM_DT, dt(BCP, 1))
    feed(r, 2, RX_CM, rts(9, 0x1100))
    eq(bus.take(), [(TX_CM, cts(2, 1, 0x1100))], "CTS for the RTS")
    eq(send_all(r, BCS, 3)[-1], 0x1100, "done")


def test_new_bam_replaces_bam():
    r, bus = mk()
    feed(r, 0, BAM_CM, bam(49))
    feed(r, 1, BAM_DT, dt(BRM, 1))
    feed(r, 2, BAM_CM, bam(13, 0x0600))
    eq([feed(r, 3 + s, BAM_DT, dt(BCP, s)) for s in (1, 2)], [0, 0x0600], "new one")
    eq(got(r), BCP, "bytes")


# ------------------------------------------------------------------ timers

def test_t2_after_cts_aborts_with_reason_3():
    r, bus = mk()
    feed(r, 100, RX_CM, rts(49))
    bus.take()
    r.poll(1350)                         # exactly T2: not yet
    eq(bus.take(), [], "at T2")
    r.poll(1351)
    eq(bus.take(), [(TX_CM, abort(3))], "Abort timeout")
    eq((r.state, r.aborts_sent, r.last_abort, r.last_error),
       (tp.S_IDLE, 1, 3, tp.E_TIMEOUT), "state")


def test_t1_between_packets_aborts_with_reason_3():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 10, RX_DT, dt(BRM, 1))
    bus.take()
    r.poll(760)
    eq(r.state, tp.S_CMDT, "open at T1")
    r.poll(761)
    eq(bus.take(), [(TX_CM, abort(3))], "Abort after T1")


def test_t2_restarts_after_each_re_cts():
    r, bus = mk({"tp.cts_window": 2})
    feed(r, 0, RX_CM, rts(49))
    feed(r, 10, RX_DT, dt(BRM, 1))
    feed(r, 20, RX_DT, dt(BRM, 2))       # window done -> CTS, T2 from 20
    bus.take()
    r.poll(20 + 1250)
    eq(r.state, tp.S_CMDT, "T2 (not T1) applies after the CTS")
    r.poll(20 + 1251)
    eq(bus.take(), [(TX_CM, abort(3))], "then abort")


def test_timer_values_from_config():
    r, bus = mk({"tp.t1_ms": 100, "tp.t2_ms": 300})
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    r.poll(301)
    eq(bus.take(), [(TX_CM, abort(3))], "T2 = 300")
    feed(r, 400, RX_CM, rts(49))
    feed(r, 410, RX_DT, dt(BRM, 1))
    bus.take()
    r.poll(511)
    eq(bus.take(), [(TX_CM, abort(3))], "T1 = 100")


def test_late_packet_without_poll_does_not_revive_session():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 900, RX_DT, dt(BRM, 2))      # nobody polled in between
    eq(bus.take(), [(TX_CM, abort(3))], "expired first")
    eq((r.state, r.last_error), (tp.S_IDLE, tp.E_NO_SESSION), "packet ignored")


def test_refused_cts_retried_within_tr():
    r, bus = mk()
    bus.ok = False
    feed(r, 0, RX_CM, rts(49))
    eq(r.tx_fail, 1, "refused")
    r.poll(10)
    bus.ok = True
    r.poll(150)
    eq(bus.take(), [(TX_CM, cts(7, 1))], "sent on retry inside Tr")
    eq(send_all(r, BRM, 150)[-1], 0x0200, "transfer completes")


def test_refused_response_given_up_after_tr():
    r, bus = mk()
    bus.ok = False
    feed(r, 0, RX_CM, rts(49))
    r.poll(200)
    eq(r.errors, 0, "still within Tr")
    r.poll(201)
    eq(r.last_error, tp.E_TX, "given up")
    bus.ok = True
    r.poll(300)
    eq(bus.take(), [], "no stale CTS later")
    r.poll(1251)
    eq(bus.take(), [(TX_CM, abort(3))], "session ends by T2")


# ------------------------------------------------------------------ malformed

def test_wrong_sequence_number_zero_or_past_end_abort_7():
    for bad in (0, 8, 255):
        r, bus = mk()
        feed(r, 0, RX_CM, rts(49))
        feed(r, 1, RX_DT, dt(BRM, 1))
        bus.take()
        d = bytearray(dt(BRM, 2))
        d[0] = bad
        eq(feed(r, 2, RX_DT, d), 0, "bad seq")
        eq(bus.take(), [(TX_CM, abort(7))], "Abort bad sequence %d" % bad)
        eq((r.state, r.last_error), (tp.S_IDLE, tp.E_SEQ), "closed")


def test_duplicate_packet_ignored_transfer_completes():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, RX_DT, dt(BRM, 1))
    feed(r, 2, RX_DT, dt(BRM, 2))
    feed(r, 3, RX_DT, dt(b"\x00" * 49, 2))      # duplicate with other data
    feed(r, 4, RX_DT, dt(BRM, 1))
    eq(send_all(r, BRM, 4, first=3)[-1], 0x0200, "completes")
    eq(got(r), BRM, "first copy kept")
    eq((r.dups, r.last_error), (2, tp.E_DUP), "counted")
    eq(bus.take(), [(TX_CM, eoma(49))], "no abort")


def test_duplicate_flood_does_not_extend_session():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 10, RX_DT, dt(BRM, 1))
    bus.take()
    for t in range(11, 760, 5):
        feed(r, t, RX_DT, dt(BRM, 1))
    r.poll(761)                         # T1 counted from the last *new* packet
    eq(bus.take(), [(TX_CM, abort(3))], "T1 still expires")


def test_gap_requests_retransmission_then_completes():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, RX_DT, dt(BRM, 1))
    feed(r, 2, RX_DT, dt(BRM, 3))              # packet 2 lost
    eq(bus.take(), [(TX_CM, cts(6, 2))], "CTS back to packet 2")
    feed(r, 3, RX_DT, dt(BRM, 4))              # rest of old window: ignored
    eq(bus.take(), [], "no second request while resyncing")
    eq(send_all(r, BRM, 10, first=2)[-1], 0x0200, "resent from 2")
    eq(got(r), BRM, "bytes")
    eq(r.retransmits, 1, "one retransmission")
    eq(bus.take(), [(TX_CM, eoma(49))], "eoma")


def test_gap_retransmission_limit_aborts_5():
    r, bus = mk()                               # tp.retries = 2
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_DT, dt(BRM, 3))               # 1st gap: re-request 2..
    feed(r, 3, RX_DT, dt(BRM, 2))
    feed(r, 4, RX_DT, dt(BRM, 3))
    feed(r, 5, RX_DT, dt(BRM, 5))               # 2nd gap: re-request 4..
    feed(r, 6, RX_DT, dt(BRM, 4))
    feed(r, 7, RX_DT, dt(BRM, 7))               # 3rd gap: limit reached
    eq(bus.take(), [(TX_CM, cts(6, 2)), (TX_CM, cts(4, 4)), (TX_CM, abort(5))],
       "two re-requests then Abort 5")
    eq(r.state, tp.S_IDLE, "closed")


def test_gap_with_retries_zero_aborts_7():
    r, bus = mk({"tp.retries": 0})
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_DT, dt(BRM, 3))
    eq(bus.take(), [(TX_CM, abort(7))], "Abort bad sequence")


def test_resync_waits_t2_if_sender_ignores_re_request():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    feed(r, 2, RX_DT, dt(BRM, 3))
    bus.take()
    for s in (4, 5, 6, 7):                      # sender carries on regardless
        feed(r, 2 + s, RX_DT, dt(BRM, s))
    r.poll(2 + 1251)
    eq(bus.take(), [(TX_CM, abort(3))], "T2 from the re-request")


def test_rts_size_packet_count_mismatch_abort_250():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49, npk=3))
    eq(bus.take(), [(TX_CM, abort(250))], "Abort other")
    eq((r.state, r.last_error), (tp.S_IDLE, tp.E_RTS), "no session")
    eq(feed(r, 1, RX_DT, dt(BRM, 1)), 0, "packets ignored")
    eq(r.last_error, tp.E_NO_SESSION, "no session")


def test_rts_size_zero_abort_250():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(0, npk=0))
    eq(bus.take(), [(TX_CM, abort(250))], "Abort other")


def test_rts_larger_than_buffer_abort_2():
    r, bus = mk(size=64)
    feed(r, 0, RX_CM, rts(65, 0x1500))
    eq(bus.take(), [(TX_CM, abort(2, 0x1500))], "Abort resources")
    eq(r.last_error, tp.E_SIZE, "size")
    feed(r, 1, RX_CM, rts(64, 0x1500))
    eq(bus.take(), [(TX_CM, cm(0x11, 10, 1, 0xFF, 0xFF, 0x1500))], "64 fits")


def test_rts_larger_than_config_max_abort_2():
    r, bus = mk({"tp.max_size": 49})
    feed(r, 0, RX_CM, rts(50, 0x1500))
    eq(bus.take(), [(TX_CM, abort(2, 0x1500))], "Abort resources")


def test_rts_over_1785_abort_9():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(1786, 0x1500, npk=255))
    eq(bus.take(), [(TX_CM, abort(9, 0x1500))], "Abort too big")


def test_rts_pgn_not_allowed_abort_250():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(20, 0x2000))           # DM1 is not taken
    eq(bus.take(), [(TX_CM, abort(250, 0x2000))], "Abort other")
    eq(r.last_error, tp.E_PGN, "pgn")
    r2, bus2 = mk(pgns=(0x2000,))
    feed(r2, 0, RX_CM, rts(20, 0x2000))
    eq(bus2.take(), [(TX_CM, cts(3, 1, 0x2000))], "allowed list is a parameter")


def test_rts_same_pgn_restarts_transfer_without_abort():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    feed(r, 2, RX_DT, dt(BRM, 2))
    msg2 = bytes(range(100, 149))
    feed(r, 3, RX_CM, rts(49))
    eq(bus.take(), [(TX_CM, cts(7, 1)), (TX_CM, cts(7, 1))], "new CTS, no abort")
    eq(send_all(r, msg2, 4)[-1], 0x0200, "new transfer completes")
    eq(got(r), msg2, "new data")
    eq(r.aborts_sent, 0, "no abort (J1939-21 5.10.3.1)")


def test_rts_other_pgn_while_open_abort_1_old_continues():
    r, bus = mk({"tp.rts_preempt": 0})          # J1939-21 mode
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_CM, rts(13, 0x0600))
    eq(bus.take(), [(TX_CM, abort(1, 0x0600))], "Abort busy for the new PGN")
    eq(r.last_error, tp.E_BUSY, "busy")
    eq(send_all(r, BRM, 3, first=2)[-1], 0x0200, "open transfer completes")
    eq(got(r), BRM, "bytes")


def test_rts_other_pgn_preempts_when_configured():
    r, bus = mk({"tp.rts_preempt": 1})          # the default (no ix: not reported)
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_CM, rts(13, 0x0600))
    eq(bus.take(), [(TX_CM, abort(1)), (TX_CM, cts(2, 1, 0x0600))],
       "the open one gets Abort 1, the new one is accepted")
    eq(send_all(r, BCP, 3)[-1], 0x0600, "BCP done")
    # a refused Abort is replaced by the CTS in the one retry slot
    bus.take()
    feed(r, 10, RX_CM, rts(49))
    bus.take()
    bus.ok = False
    feed(r, 11, RX_CM, rts(9, 0x1100))
    bus.ok = True
    r.poll(20)
    eq(bus.take(), [(TX_CM, cts(2, 1, 0x1100))], "CTS retried, not the Abort")


def test_invalid_rts_for_open_pgn_closes_it():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, RX_CM, rts(49, npk=3))
    eq(bus.take(), [(TX_CM, abort(250))], "Abort")
    eq(r.state, tp.S_IDLE, "the open transfer of that PGN is closed too")


def test_dt_without_session_ignored():
    r, bus = mk()
    eq(feed(r, 0, RX_DT, dt(BRM, 1)), 0, "nothing")
    eq((r.errors, r.last_error, bus.take()), (1, tp.E_NO_SESSION, []), "ignored")


def test_wrong_source_address_ignored():
    r, bus = mk()
    feed(r, 0, 0x1CEC56F5, rts(49))             # RTS from 0xF5
    eq((r.state, r.last_error, bus.take()), (tp.S_IDLE, tp.E_ADDR, []), "RTS ignored")
    feed(r, 1, RX_CM, rts(49))
    bus.take()
    feed(r, 2, 0x1CEB56F5, dt(b"\x00" * 49, 1))  # DT from 0xF5 mid-transfer
    eq(r.last_error, tp.E_ADDR, "DT ignored")
    eq(send_all(r, BRM, 3)[-1], 0x0200, "real transfer unaffected")
    eq(got(r), BRM, "bytes")
    feed(r, 20, 0x1CEC56F5, abort(3))
    eq(r.aborts_rcvd, 0, "foreign abort ignored")


def test_wrong_destination_ignored():
    r, bus = mk()
    feed(r, 0, 0x1CEC57F4, rts(49))             # to 0x57
    feed(r, 0, BAM_CM, rts(49))                 # RTS to global
    eq((r.state, r.errors, bus.take()), (tp.S_IDLE, 2, []), "ignored")
    feed(r, 1, RX_CM, rts(49))
    bus.take()
    feed(r, 2, BAM_DT, dt(BRM, 1))              # DT to global mid RTS/CTS
    eq((r.last_error, r._next), (tp.E_ADDR, 1), "not taken")


def test_dlc_short_tp_cm_ignored():
    r, bus = mk()
    for n in range(8):
        feed(r, 0, RX_CM, rts(49), n)
    eq((r.state, r.errors, r.last_error, bus.take()), (tp.S_IDLE, 8, tp.E_DLC, []),
       "every RTS with DLC < 8 ignored")
    feed(r, 1, RX_CM, rts(49))
    bus.take()
    feed(r, 2, RX_CM, abort(3), 7)
    eq(r.state, tp.S_CMDT, "short Abort ignored too")


def test_dlc_short_tp_dt_counts_as_lost():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, RX_DT, dt(BRM, 1))
    feed(r, 2, RX_DT, dt(BRM, 2), 5)            # 4 of 7 payload bytes
    eq((r.last_error, r._next), (tp.E_DLC, 2), "not taken")
    feed(r, 3, RX_DT, dt(BRM, 3))
    eq(bus.take(), [(TX_CM, cts(6, 2))], "gap -> retransmission")
    feed(r, 4, RX_DT, dt(BRM, 2), 0)            # DLC 0
    eq(r.last_error, tp.E_DLC, "DLC 0")
    eq(send_all(r, BRM, 5, first=2)[-1], 0x0200, "completes")


def test_dlc_short_last_packet_with_all_bytes_accepted():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(9, 0x1100))
    feed(r, 1, RX_DT, dt(BCS, 1))
    eq(feed(r, 2, RX_DT, dt(BCS, 2), 3), 0x1100, "seq + 2 bytes is enough")
    eq(got(r), BCS, "bytes")
    r2, bus2 = mk()
    feed(r2, 0, RX_CM, rts(9, 0x1100))
    feed(r2, 1, RX_DT, dt(BCS, 1))
    eq(feed(r2, 2, RX_DT, dt(BCS, 2), 2), 0, "one byte short")


def test_frame_length_larger_than_data_is_clamped():
    r, bus = mk()
    eq(r.on_frame(0, RX_CM, bytearray(rts(49)[:4]), 8), 0, "no IndexError")
    eq(r.last_error, tp.E_DLC, "treated as short")


def test_received_abort_drops_transfer():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_CM, abort(3))
    eq((r.state, r.aborts_rcvd, r.peer_abort, r.errors), (tp.S_IDLE, 1, 3, 0), "dropped")
    eq(feed(r, 3, RX_DT, dt(BRM, 2)), 0, "later packets ignored")
    r.poll(5000)
    eq(bus.take(), [], "we never answer an Abort")


def test_received_abort_for_other_pgn_ignored():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    feed(r, 1, RX_CM, abort(3, 0x0600))
    eq((r.state, r.aborts_rcvd, r.last_error), (tp.S_CMDT, 0, tp.E_UNEXPECTED), "kept")
    feed(r, 2, RX_CM, abort(3))                 # no session any more after this
    feed(r, 3, RX_CM, abort(3))
    eq((r.aborts_rcvd, r.last_error), (1, tp.E_UNEXPECTED), "abort w/o session")


def test_cts_eoma_unknown_control_from_peer_ignored():
    r, bus = mk()
    feed(r, 0, RX_CM, rts(49))
    bus.take()
    for d in (cts(7, 1), eoma(49), cm(0x14, 0, 0, 0, 0, 0x0200), cm(0x00, 0, 0, 0, 0, 0)):
        feed(r, 1, RX_CM, d)
    eq((r.state, r.errors, r.last_error, bus.take()),
       (tp.S_CMDT, 4, tp.E_UNEXPECTED, []), "ignored, transfer open")
    eq(send_all(r, BRM, 2)[-1], 0x0200, "still completes")


def test_non_tp_frame_ignored():
    r, bus = mk()
    eq(feed(r, 0, 0x1C0256F4, BRM[:8]), 0, "BRM id is not TP")
    eq(feed(r, 0, 0x1DEC56F4, rts(49)), 0, "DP = 1: PGN 0x1EC00, not TP")
    eq((r.state, r.errors, r.last_error), (tp.S_IDLE, 2, tp.E_UNEXPECTED), "ignored")


def test_flood_of_random_tp_frames_never_raises_and_recovers():
    r, bus = mk()
    x = 12345
    ids = (RX_CM, RX_DT, BAM_CM, BAM_DT, 0x1CEC56F5, 0x1CEB57F4)
    to_us = 0
    d = bytearray(8)
    t = 0
    for _ in range(20000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        cid = ids[x % 6]
        for i in range(8):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            d[i] = (x >> 16) & 0xFF
        if x & 3 == 0:
            d[0] = 0x10                         # plenty of RTS
        if x & 7 == 1:
            d[0] = (x >> 8) & 7                 # plausible sequence numbers
        t += x & 15
        if cid == RX_CM or cid == RX_DT:
            to_us += 1
        r.on_frame(t, cid, d, (x >> 4) & 15)   # DLC 0..15, some > 8
        if x & 31 == 0:
            r.poll(t)
    # one answer per frame from the peer to us at most, plus at most one
    # Abort per transfer closed by a timer, its total bound or a preempting
    # RTS (each needs an RTS to us): no amplification
    true(len(bus.out) <= 2 * to_us, "answers bounded: %d for %d" % (len(bus.out), to_us))
    true(r.completed + r.aborts_sent + r.errors > 1000, "the flood did reach the paths")
    r.reset()
    bus.take()
    feed(r, t + 1, RX_CM, rts(49))
    eq(send_all(r, BRM, t + 2)[-1], 0x0200, "works after the flood")
    eq(got(r), BRM, "bytes")


# ------------------------------------------------ issue 10 item 9: TP abuse

def _ix_events(ix):
    out = []
    e = [0, 0, 0]
    for s in range(ix.oldest(), ix.seq):
        if ix.read(s, e):
            out.append((e[0], e[1], e[2]))
    return out


def test_issue10_item09_tp_trickle_bounded():
    # One TP.DT every 700 ms (< T1 750) would hold a 1785-byte transfer open
    # for 255 x 0.7 = 178.5 s.  Bound: tp.total_base_ms + packets x
    # tp.total_pkt_ms = 1250 + 255 x 200 = 52250 ms after the RTS.
    ix = IntrusionMonitor()
    r, bus = mk(ix=ix)
    big = bytes(k & 0xFF for k in range(1785))
    feed(r, 1000, RX_CM, rts(1785, 0x1500))
    eq(bus.take(), [(TX_CM, cts(255, 1, 0x1500))], "CTS all 255")
    t = 1000
    seq = 1
    aborted = -1
    while t < 1000 + 60000:
        t += 10
        if (t - 1000) % 700 == 0:
            feed(r, t, RX_DT, dt(big, seq))
            seq += 1
        else:
            r.poll(t)
        o = bus.take()
        if o:
            eq(o, [(TX_CM, abort(3, 0x1500))], "Abort timeout at %d" % t)
            aborted = t
            break
    eq(aborted, 1000 + 52250 + 10, "aborted at the first poll past the bound")
    eq(seq - 1, 52250 // 700, "packets taken until then")
    eq((r.state, r.last_abort, r.last_error), (tp.S_IDLE, 3, tp.E_SLOW), "closed")
    eq(_ix_events(ix), [(aborted, IX_TP_TRICKLE, 0x1500)], "intrusion noted once")
    # the next packet of the trickle finds no transfer: ignored, nothing sent
    feed(r, 1000 + 53200, RX_DT, dt(big, seq))
    eq((bus.take(), r.last_error), ([], tp.E_NO_SESSION), "late packet ignored")
    # the same size at the slowest normal pace (one packet per 200 ms) passes
    r2, bus2 = mk(ix=ix)
    feed(r2, 0, RX_CM, rts(1785, 0x1500))
    res = 0
    for s in range(1, 256):
        res = feed(r2, 200 * s, RX_DT, dt(big, s))
    eq(res, 0x1500, "200 ms per packet completes")
    eq(got(r2), big, "bytes")
    eq(ix.count[IX_TP_TRICKLE], 1, "no intrusion for it")


def test_issue10_item09_tp_trickle_bound_from_config():
    ix = IntrusionMonitor()
    r, bus = mk({"tp.total_base_ms": 500, "tp.total_pkt_ms": 50}, ix=ix)
    feed(r, 0, RX_CM, rts(49))                # 7 packets: 500 + 350 ms
    bus.take()
    for s in range(1, 7):
        feed(r, 120 * s, RX_DT, dt(BRM, s))   # 120 ms apart: T1 never expires
    eq(bus.take(), [], "no answer while inside the bound")
    r.poll(850)
    eq(r.state, tp.S_CMDT, "open at the bound")
    r.poll(851)
    eq(bus.take(), [(TX_CM, abort(3))], "Abort 3 past it")
    eq(ix.count[IX_TP_TRICKLE], 1, "noted")
    # a BAM is bounded the same way, dropped silently
    feed(r, 1000, BAM_CM, bam(13, 0x0600))    # 2 packets: 600 ms
    feed(r, 1150, BAM_DT, dt(BCP, 1))
    r.poll(1601)
    eq((r.state, bus.take(), ix.count[IX_TP_TRICKLE]), (tp.S_IDLE, [], 2),
       "BAM dropped, no Abort, noted")


def test_issue10_item09_rts_other_pgn_preempts_by_default():
    # A new RTS for another PGN replaces the open transfer (EN+ restarts on
    # any RTS; the kernel cancels the open one with Abort 1 "busy").
    ix = IntrusionMonitor()
    r, bus = mk(ix=ix)
    feed(r, 0, RX_CM, rts(49))
    feed(r, 1, RX_DT, dt(BRM, 1))
    bus.take()
    feed(r, 2, RX_CM, rts(9, 0x1100))
    eq(bus.take(), [(TX_CM, abort(1, 0x0200)), (TX_CM, cts(2, 1, 0x1100))],
       "Abort 1 for the open BRM, CTS for the BCS")
    eq(send_all(r, BCS, 3)[-1], 0x1100, "BCS completes")
    eq(got(r), BCS, "BCS bytes")
    eq(bus.take(), [(TX_CM, eoma(9, 0x1100))], "EndOfMsgAck")
    eq(_ix_events(ix), [(2, IX_TP_PREEMPT, 0x0200)], "intrusion: the dropped PGN")
    # the rest of the old transfer finds nothing open
    feed(r, 10, RX_DT, dt(BRM, 2))
    eq((bus.take(), r.last_error), ([], tp.E_NO_SESSION), "old packets ignored")
    # same PGN again: J1939-21 restart, no Abort, no intrusion
    feed(r, 20, RX_CM, rts(49))
    feed(r, 21, RX_DT, dt(BRM, 1))
    feed(r, 22, RX_CM, rts(49))
    eq(bus.take(), [(TX_CM, cts(7, 1)), (TX_CM, cts(7, 1))], "restart")
    eq(ix.count[IX_TP_PREEMPT], 1, "not an intrusion")


# ------------------------------------------------------------------ config

def test_config_schema_registered_with_j1939_defaults():
    d = config.defaults()
    eq((d["tp.t1_ms"], d["tp.t2_ms"], d["tp.t3_ms"], d["tp.t4_ms"], d["tp.tr_ms"]),
       (750, 1250, 1250, 1050, 200), "J1939-21 timers")
    eq((d["tp.cts_window"], d["tp.max_size"]), (255, 1785), "limits")
    eq(config.validate(d), [], "defaults valid")
    for e in tp.CONFIG_SCHEMA:
        true(e[2] <= e[1] <= e[3], "default inside range: " + e[0])
        true(len(e[5]) > 10, "documented: " + e[0])


def test_full_config_dict_accepted():
    cfg, errors = config.load(None, {"tp.cts_window": 16})
    eq(errors, [], "valid")
    r, bus = mk(cfg)
    feed(r, 0, RX_CM, rts(1785, 0x1500))
    eq(bus.take(), [(TX_CM, cm(0x11, 16, 1, 0xFF, 0xFF, 0x1500))], "window 16")


mptest.main(globals())
