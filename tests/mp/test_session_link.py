"""BmsLink: address filter, single-frame and TP decode, dispatch, counters."""
import mptest
from mptest import eq, true
from gbt import ids
from gbt import messages as m
from bmsscript import brm, bhm, bcl
from doubles import can_frame, recorded_link


def test_single_frame_decoded_and_dispatched():
    r, bms, link = recorded_link()
    link.on_frame(100, can_frame(ids.ID_BCL, bcl(4100, 1000, 2)))
    eq(r.calls, [(100, ids.PGN_BCL, m.OK)], "handler")
    eq((bms.req_v, bms.req_i, bms.req_mode), (4100, 1000, 2), "decoded")
    eq(link.last_ok[ids.PGN_BCL >> 8], 100, "time stamp")
    eq(link.msgs, 1, "count")


def test_address_filter():
    r, bms, link = recorded_link()
    link.on_frame(1, can_frame(0x18100001, bcl(4100, 1000)))     # SA 0x01
    link.on_frame(2, can_frame(0x181057F4, bcl(4100, 1000)))     # DA 0x57
    link.on_frame(3, can_frame(0x18F004F4, bcl(4100, 1000)))     # PDU2
    eq(r.calls, [], "nothing dispatched")
    eq(link.ignored, 3, "ignored")
    eq(bms.req_v, -1, "bms untouched")
    link.on_frame(4, can_frame(0x1827FFF4, bhm(5000)))           # global DA accepted
    eq(r.calls, [(4, ids.PGN_BHM, m.OK)], "global")


def test_unknown_and_bad():
    r, bms, link = recorded_link()
    link.on_frame(1, can_frame(0x180556F4, b"\x01\x02"))         # PF 0x05: not GB/T
    eq(link.unknown, 1, "unknown counted")
    eq(r.calls, [], "not dispatched")
    link.on_frame(2, can_frame(ids.ID_BCL, b"\x01\x02"))         # short BCL
    eq(r.calls, [(2, ids.PGN_BCL, m.E_LEN)], "bad length dispatched as such")
    eq(link.bad_len, 1, "count")
    f = can_frame(ids.ID_BCL, bcl(4100, 1000))
    f.dlc = 15                                              # corrupt DLC: clamped to 8
    link.on_frame(3, f)
    eq(r.calls[-1], (3, ids.PGN_BCL, m.OK), "DLC > 8 clamped")


def test_tp_brm_reassembled():
    r, bms, link = recorded_link()
    p = brm()
    n = len(p)
    link.on_frame(10, can_frame(ids.ID_TPCM_RX, bytes([0x10, n, 0, 7, 0xFF, 0x00, 0x02, 0x00])))
    eq(r.sent[0][0], ids.ID_TPCM_TX, "CTS sent")
    eq(r.sent[0][1][0], 0x11, "CTS")
    for k in range(7):
        chunk = p[k * 7:k * 7 + 7]
        link.on_frame(11 + k, can_frame(ids.ID_TPDT_RX, bytes([k + 1]) + chunk + b"\xff" * (7 - len(chunk))))
    eq(r.calls, [(17, ids.PGN_BRM, m.OK)], "BRM dispatched once")
    eq(bms.vin_str(), "LSVAB4BR2EN123456", "VIN")
    eq(r.sent[-1][1][0], 0x13, "EndOfMsgAck")


mptest.main(globals())
