"""Transport (J1939-21 TP) errors seen on the bus: the charger's CTS /
EndOfMsgAck / Abort bytes and whether the message took effect.  BRM and BCP
are stage-2 messages (DN20xx), BCS stage 3 (DN30xx).  Case IDs:
docs/conformance.md."""
import pytest

from host_tools.bms import codec
from host_tools.bms.scenario import Scenario, builtin

from .conftest import CAN_MS, CEM, RX_LAT, TICK, data, ms

BRM_PGN = b"\x00\x02\x00"
BCP_PGN = b"\x00\x06\x00"
EOMA_BRM = bytes.fromhex("13310007ff000200")
CTS_BRM_ALL = bytes.fromhex("110701ffff000200")


def _abort(reason, pgn3):
    return bytes([0xFF, reason, 0xFF, 0xFF, 0xFF]) + pgn3


def _crm_aa_t(b, after=-1):
    return b.first_t("CRM", after=after, pred=lambda d: d[0] == 0xAA)


# -- raw-frame bench: the test is the BMS's transport layer for BRM -----------------
BRM_PAYLOAD = codec.encode("BRM", {"vin": "LCONFORMANCE00001", "length": 49})


def _raw_brm_bench(bench, config=None):
    """A session in the recognition stage whose BMS simulator stays silent
    on BRM for 4 s: the test sends BRM itself (BRM timeout is 5 s)."""
    b = bench(scenario=[{"type": "drop", "message": "BRM", "stage": "recognition",
                         "duration_ms": 4000}], config=config)
    b.run_to_stage("recognition", 10000)
    b.run_for(20)
    return b


def _rts(b, size=49, npk=7, pgn3=BRM_PGN, maxp=0xFF):
    b.send("TPCM", bytes([0x10]) + size.to_bytes(2, "little") + bytes([npk, maxp]) + pgn3)


def _dt(b, seq, payload=BRM_PAYLOAD, wire_seq=None):
    chunk = payload[(seq - 1) * 7: seq * 7]
    b.send("TPDT", bytes([seq if wire_seq is None else wire_seq]) + chunk.ljust(7, b"\xff"))


def _step(b, ms_=10):
    b.run_for(ms_)


def test_dp2005_raw_brm_transfer_exact_bytes(bench):
    """Reference for the raw cases: RTS -> CTS(7 from 1) -> 7 TP.DT ->
    EndOfMsgAck, then CRM 0xAA at the next CRM slot."""
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL]
    assert ms(b.tx("TPCM", after=t)[0]) - t == RX_LAT          # within Tr (200 ms)
    for seq in range(1, 8):
        _dt(b, seq)
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, EOMA_BRM]
    b.run_for(300)
    t_aa = _crm_aa_t(b)
    assert t_aa is not None and t_aa - t <= 250 + 2 * TICK


# -- DN2015: missing TP.DT packet -> re-request, then complete ----------------------
def test_dn2015_missing_packet_rerequested(bench):
    b = bench(scenario=Scenario.load(builtin("brm_tp_missing_packet")))
    b.run_to_stage("parameter", 10000)
    cm = b.tp_cm()
    i = cm.index(CTS_BRM_ALL)
    # gap seen at packet 4: CTS for the 5 packets from 3, then EndOfMsgAck
    assert cm[i + 1] == bytes.fromhex("110503ffff000200")
    assert cm[i + 2] == EOMA_BRM
    assert not any(x[0] == 0xFF for x in cm)
    dts = [data(f)[0] for f in b.rx("TPDT") if ms(f) < ms(b.tx("TPCM")[i + 2])]
    assert dts == [1, 2, 4, 5, 6, 7, 3, 4, 5, 6, 7]
    assert _crm_aa_t(b) > ms(b.tx("TPCM")[i + 2])             # took effect once complete


# -- DN2016 / DN2017: wrong sequence numbers --------------------------------------------
def test_dn2016_sequence_gap_rerequested(bench):
    b = bench(scenario=Scenario.load(builtin("brm_tp_wrong_seq")))     # packet 4 sent as 5
    b.run_to_stage("parameter", 10000)
    cm = b.tp_cm()
    i = cm.index(CTS_BRM_ALL)
    assert cm[i + 1] == bytes.fromhex("110404ffff000200")   # 4 packets from 4 again
    assert cm[i + 2] == EOMA_BRM
    assert b.stage_t("parameter") is not None


@pytest.mark.parametrize("bad_seq", [0, 9], ids=["seq0", "seq_past_end"])
def test_dn2017_bad_sequence_aborts(bench, bad_seq):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    _step(b)
    _dt(b, 1)
    _dt(b, 2, wire_seq=bad_seq)
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, _abort(7, BRM_PGN)]
    for seq in range(3, 8):                                  # the rest is ignored
        _dt(b, seq)
    b.run_for(600)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, _abort(7, BRM_PGN)]
    assert _crm_aa_t(b) is None                              # BRM not taken


# -- DN2018: RTS size / packet count mismatch -------------------------------------------
@pytest.mark.parametrize("size,npk", [(50, 7), (49, 8), (0, 0)],
                         ids=["size_plus1", "count_plus1", "size0"])
def test_dn2018_rts_size_count_mismatch(bench, size, npk):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b, size=size, npk=npk)
    _step(b)
    assert b.tp_cm(after=t) == [_abort(250, BRM_PGN)]
    assert ms(b.tx("TPCM", after=t)[0]) - t == RX_LAT
    for seq in range(1, 8):
        _dt(b, seq)
    b.run_for(600)
    assert b.tp_cm(after=t) == [_abort(250, BRM_PGN)] and _crm_aa_t(b) is None


def test_dn2018_bms_retries_after_mismatch(bench):
    """With the BMS simulator: its first BRM announces 50 bytes in 7 packets;
    aborted at once; the next (correct) BRM 250 ms later is accepted."""
    b = bench(scenario=[{"type": "tp", "message": "BRM", "stage": "recognition",
                         "fault": "size", "value": 1}])
    b.run_to_stage("parameter", 10000)
    cm = b.tp_cm()
    assert cm[0] == _abort(250, BRM_PGN) and cm[1] == CTS_BRM_ALL and cm[2] == EOMA_BRM
    t_eoma = ms(b.tx("TPCM")[2])
    assert _crm_aa_t(b) > t_eoma


# -- DN2019: abort from the BMS ----------------------------------------------------------
def test_dn2019_abort_from_bms(bench):
    b = bench(scenario=Scenario.load(builtin("bcp_tp_abort")))
    b.run_to_stage("parameter", 10000)
    aborts = [f for f in b.rx("TPCM") if data(f)[0] == 0xFF]
    t_ab = ms(aborts[0])
    assert data(aborts[0])[5:8] == BCP_PGN
    # the charger answers nothing to the abort and takes nothing from it
    t_next = next(ms(f) for f in b.rx("TPCM", after=t_ab) if data(f)[0] == 0x10)
    assert not b.tx("TPCM", after=t_ab, before=t_next)
    assert ms(b.tx("CML")[0]) > t_next                       # CML only after the next BCP
    assert b.tp_cm(after=t_next)[:2] == [bytes.fromhex("110201ffff000600"),
                                         bytes.fromhex("130d0002ff000600")]


# -- DN2020: RTS while a transfer is open ------------------------------------------------
CTS_BCP_ALL = bytes.fromhex("110201ffff000600")


def test_dn2020_rts_other_pgn_while_open(bench):
    """Default (tp.rts_preempt = 1): the new RTS replaces the open transfer,
    which is cancelled with Abort 1 (issue 10 item 9)."""
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    _step(b)
    _dt(b, 1)
    _rts(b, size=13, npk=2, pgn3=BCP_PGN)                    # BCP while BRM is open
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, _abort(1, BRM_PGN), CTS_BCP_ALL]
    for seq in (1, 2):                                       # the BMS goes on with BCP
        _dt(b, seq, payload=bytes(range(13)))
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, _abort(1, BRM_PGN), CTS_BCP_ALL,
                                bytes.fromhex("130d0002ff000600")]
    b.run_for(300)
    assert _crm_aa_t(b) is None                              # the BRM was not taken


def test_dn2020_rts_other_pgn_while_open_j1939_mode(bench):
    """tp.rts_preempt = 0 (J1939-21): Abort 1 to the new RTS, the open
    transfer goes on."""
    b = _raw_brm_bench(bench, config={"tp.rts_preempt": 0})
    t = b.now
    _rts(b)
    _step(b)
    _dt(b, 1)
    _rts(b, size=13, npk=2, pgn3=BCP_PGN)                    # BCP while BRM is open
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, _abort(1, BCP_PGN)]
    for seq in range(2, 8):                                  # the BRM transfer goes on
        _dt(b, seq)
    _step(b)
    assert b.tp_cm(after=t)[-1] == EOMA_BRM
    b.run_for(300)
    assert _crm_aa_t(b) is not None


def test_dn2020_rts_same_pgn_restarts(bench):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    _step(b)
    _dt(b, 1)
    _dt(b, 2)
    _step(b)
    _rts(b)                                                  # same PGN again: restart
    _step(b)
    assert b.tp_cm(after=t) == [CTS_BRM_ALL, CTS_BRM_ALL]    # no Abort
    for seq in range(1, 8):
        _dt(b, seq)
    _step(b)
    assert b.tp_cm(after=t)[-1] == EOMA_BRM


# -- DN2021: TP.DT with no transfer open ---------------------------------------------------
def test_dn2021_dt_without_session_ignored(bench):
    b = _raw_brm_bench(bench)
    t = b.now
    for seq in range(1, 8):
        _dt(b, seq)
    b.run_for(600)
    assert b.tp_cm(after=t) == [] and _crm_aa_t(b) is None


# -- DN2022: transfer for a wrong PGN ------------------------------------------------------
@pytest.mark.parametrize("pgn3", [b"\x00\x27\x00", b"\x00\x10\x00", b"\x00\x30\x00"],
                         ids=["BHM", "BCL", "unknown_0x3000"])
def test_dn2022_rts_wrong_pgn_aborted(bench, pgn3):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b, pgn3=pgn3)
    _step(b)
    assert b.tp_cm(after=t) == [_abort(250, pgn3)]


# -- DN2023 / DN2024: J1939 T2 / T1 expiry ---------------------------------------------------
def test_dn2023_no_data_after_cts_t2(bench):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    b.run_for(1500)
    cm = b.tx("TPCM", after=t)
    assert [data(f) for f in cm] == [CTS_BRM_ALL, _abort(3, BRM_PGN)]
    assert 1250 <= ms(cm[1]) - ms(cm[0]) <= 1250 + CAN_MS      # T2 = 1250 ms, CAN task period
    assert _crm_aa_t(b) is None


def test_dn2024_silence_between_packets_t1(bench):
    b = _raw_brm_bench(bench)
    t = b.now
    _rts(b)
    _step(b)
    for seq in (1, 2, 3):
        _dt(b, seq)
    t_dt = b.now
    b.run_for(1000)
    cm = b.tx("TPCM", after=t)
    assert [data(f) for f in cm] == [CTS_BRM_ALL, _abort(3, BRM_PGN)]
    assert 750 <= ms(cm[1]) - t_dt <= 750 + RX_LAT + CAN_MS    # T1 = 750 ms
    assert _crm_aa_t(b) is None


# -- DN3014: BCS transfers that never complete -> BCS timeout -----------------------------
def test_dn3014_bcs_transfer_aborted_counts_as_missing(bench):
    b = bench(params={"max_current_a": 20.0}, scenario=[
        {"type": "tp", "message": "BCS", "stage": "charging", "after_ms": 3000,
         "fault": "abort", "packet": 1, "duration_ms": 10000, "count": 100}])
    b.run_to_stage("charging", 10000)
    b.run_to_stage("rehandshake", 9000)
    eoma = [ms(f) for f in b.tx("TPCM") if data(f)[0] == 0x13 and data(f)[5:8] == b"\x00\x11\x00"]
    t_cem = b.first_t("CEM")
    aborted = [f for f in b.rx("TPCM") if data(f)[0] == 0xFF and data(f)[5:8] == b"\x00\x11\x00"]
    assert len(aborted) >= 15                                  # BCS kept coming, never whole
    assert data(b.first("CEM")) == CEM["BCS"]
    assert 5000 <= t_cem - eoma[-1] <= 5000 + TICK


# -- DP3007: BMV by BAM (broadcast) accepted without an answer ----------------------------
def test_dp3007_bmv_by_bam_not_answered(bench):
    b = bench(params={"bmv_bmt_bam": True})
    t = b.run_to_stage("charging", 10000)
    b.run_for(3000)
    bam = [f for f in b.rx("TPCM") if data(f)[0] == 0x20]
    assert bam and (bam[0].arbitration_id >> 8) & 0xFF == 0xFF   # to global
    t_bam = ms(bam[0])
    # only BCS transfers are answered around it; nothing for the BAM
    assert all(x[5:8] == b"\x00\x11\x00" for x in b.tp_cm(after=t_bam - 1, before=t_bam + 2000))
    assert not b.tx("CEM") and b.stage_t("stopping") is None


# -- issue 10 item 9: a TP.DT trickle must not hold the only TP channel ------------------
BSP_PGN = b"\x00\x17\x00"         # the BMS simulator never sends BSP
BCS_PGN = b"\x00\x11\x00"


def _trickle(b, seconds, size=1785):
    """RTS for a 1785-byte BSP from the BMS address, then one TP.DT every 700 ms
    (just under T1 = 750 ms): on the base commit this holds the transfer for
    255 x 0.7 s and every BCS RTS meanwhile gets Abort 1."""
    npk = (size + 6) // 7
    _rts(b, size=size, npk=npk, pgn3=BSP_PGN)
    for seq in range(1, seconds * 10 // 7 + 1):
        b.run_for(700)
        b.send("TPDT", bytes([seq]) + bytes([seq & 0xFF]) * 7)


def test_issue10_item09_tp_trickle_does_not_starve_bcs(bench, tmp_path):
    from host_tools import eventlog
    b = bench()
    b.run_to_stage("charging", 15000)
    b.run_for(1000)
    t = b.now
    _trickle(b, 25)
    b.run_for(1000)
    # no BCS timeout: no CEM, no re-handshake, still charging (base: CEM BCS
    # 5 s in, then re-handshakes, every BCS RTS refused with Abort 1)
    assert not b.tx("CEM") and b.stage_t("rehandshake", t) is None
    assert b.stages()[-1][1] == "charging"
    cm = b.tp_cm(after=t)
    # the next BCS RTS preempted the trickle: one Abort 1 naming the BSP ...
    assert [x for x in cm if x[0] == 0xFF and x[5:8] == BSP_PGN] == [_abort(1, BSP_PGN)]
    # ... and no BCS was ever refused as "busy"; BCS kept completing (4 per s)
    assert not [x for x in cm if x[0] == 0xFF and x[1] == 1 and x[5:8] == BCS_PGN]
    eoma_bcs = [x for x in cm if x[0] == 0x13 and x[5:8] == BCS_PGN]
    assert len(eoma_bcs) >= 26 * 4 - 8, len(eoma_bcs)
    # the pattern is reported: console event and event-log record (EV_INTRUSION)
    assert [s for _, s in b.texts("intrusion")] == ["tp-preempt 0x1700"]
    recs, _ = eventlog.decode_files([tmp_path / "b0" / "state"])
    ix = [(r["a"], r["b"]) for r in recs if r["name"] == "intrusion"]
    assert ix == [(4, 0x1700)]                               # IX_TP_PREEMPT, the BSP PGN


def test_issue10_item09_tp_trickle_bounded_without_preempt(bench, tmp_path):
    """With tp.rts_preempt = 0 (J1939-21) the transfer's own time bound ends
    the trickle: 1250 + 7 x 200 = 2650 ms for a 49-byte (7-packet) BSP, then
    Abort 3 and an intrusion record; the BCS RTS refused meanwhile (Abort 1)
    cost no CEM."""
    from host_tools import eventlog
    b = bench(config={"tp.rts_preempt": 0})
    b.run_to_stage("charging", 15000)
    b.run_for(1000)
    t = b.now
    _rts(b, size=49, npk=7, pgn3=BSP_PGN)
    t_rts = b.now
    for seq in range(1, 8):
        b.run_for(700)
        b.send("TPDT", bytes([seq]) + bytes([seq]) * 7)
    b.run_for(2000)
    cm = b.tx("TPCM", after=t)
    bsp = [f for f in cm if data(f)[5:8] == BSP_PGN]
    assert [data(f)[:2] for f in bsp] == [b"\x11\x07", b"\xff\x03"]   # CTS, Abort 3
    assert 2650 < ms(bsp[1]) - t_rts <= 2650 + RX_LAT + CAN_MS
    busy = [f for f in cm if data(f)[:2] == b"\xff\x01" and data(f)[5:8] == BCS_PGN]
    assert busy and all(ms(f) < ms(bsp[1]) for f in busy)    # BCS refused only meanwhile
    assert not b.tx("CEM") and b.stages()[-1][1] == "charging"
    assert [s for _, s in b.texts("intrusion")] == ["tp-trickle 0x1700"]
    recs, _ = eventlog.decode_files([tmp_path / "b0" / "state"])
    assert [(r["a"], r["b"]) for r in recs if r["name"] == "intrusion"] == [(3, 0x1700)]
