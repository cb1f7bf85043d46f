"""Settings of the charger session (GB/T 27930 charger side), with defaults.

Every time, threshold and limit the session, its transmitter and its output
control use is here, declared as ``CONFIG_SCHEMA`` and registered with
``config.register``.  ``SessionConfig`` copies the values once into plain
attributes (``c.bcl_ms``) so that the 10 ms tick never looks a key up.
Values are read through ``config.get`` (the one config path): a key missing
from the dict given to it takes its registered schema default (tests and tools
may pass a partial dict; the product passes a validated full one).
Where each number comes from: docs/session.md.
"""
import config

_S = "session."

CONFIG_SCHEMA = (
    # start / plug
    ("session.auto_start", True, None, None, "-",
     "Start the session as soon as the gun is plugged (SIL bench); false = wait for operator_start()"),
    ("session.profile", 0, 0, 1, "-",
     "Message profile: 0 = GB/T 27930-2015, 1 = 2023 Category A (CCS 7 bytes, CST self-check/pre-charge bits)"),
    ("session.cc1_lo_mv", 3200, 0, 12000, "mV", "CC1 state 3 (4 V +-0.8 V) lower bound"),
    ("session.cc1_hi_mv", 4800, 0, 12000, "mV", "CC1 state 3 upper bound"),
    ("session.cc1_on_ms", 100, 0, 5000, "ms", "CC1 must stay in band this long before the gun counts as plugged"),
    ("session.cc1_lost_ms", 10, 0, 1000, "ms", "CC1 outside the band this long during a session = connector removed"),
    ("session.replug_ms", 1000, 0, 60000, "ms", "CC1 outside the band this long after an end = re-plugged"),
    ("session.lock_fb", True, None, None, "-", "Require the lock feedback input before going on"),
    ("session.lock_ms", 1000, 10, 10000, "ms", "Lock feedback timeout"),
    # transmit periods (spec section 2)
    ("session.chm_ms", 250, 10, 5000, "ms", "CHM period"),
    ("session.crm_ms", 250, 10, 5000, "ms", "CRM period"),
    ("session.cts_ms", 500, 10, 5000, "ms", "CTS period"),
    ("session.cml_ms", 250, 10, 5000, "ms", "CML period"),
    ("session.cro_ms", 250, 10, 5000, "ms", "CRO period"),
    ("session.ccs_ms", 50, 10, 5000, "ms", "CCS period"),
    ("session.cst_ms", 10, 10, 5000, "ms", "CST period"),
    ("session.cst_max_ms", 10000, 100, 60000, "ms", "CST is sent at most this long (GB/T 34658 DN4002)"),
    ("session.csd_ms", 250, 10, 5000, "ms", "CSD period"),
    ("session.cem_ms", 250, 10, 5000, "ms", "CEM period"),
    ("session.cts_enable", True, None, None, "-", "Send CTS (optional message) with CML"),
    # handshake, self-check, insulation test
    ("session.bhm_ms", 10000, 100, 60000, "ms", "Wait for BHM after CHM starts (spec: UNCONFIRMED, ENPLUS 10 s)"),
    ("session.bhm_legacy", True, None, None, "-",
     "No BHM in time: true = go on (legacy BMS; insulation test per no_bhm_ins_v, never at the rated voltage); false = end, no charge"),
    ("session.no_bhm_ins_v", 0, 0, 15000, "0.1 V",
     "No BHM in time: 0 = skip the insulation test, go to recognition (EN+ practice); else test at this voltage (capped at rating.max_v, lowered by a late BHM; below rating.min_v: skipped)"),
    ("session.selfcheck_v", 100, 0, 1000, "0.1 V", "Voltage outside K1/K2 must be below this before the insulation test"),
    ("session.ins_v_tol", 100, 1, 1000, "0.1 V", "Insulation test: output within this of the test voltage before K1/K2 close"),
    ("session.ins_i", 10, 1, 1000, "0.1 A", "Insulation test: power stage current limit"),
    ("session.ins_ramp_ms", 5000, 100, 60000, "ms", "Insulation test: time to reach the test voltage"),
    ("session.ins_settle_ms", 1000, 0, 60000, "ms", "Insulation test: K1/K2 closed this long before the reading counts"),
    ("session.ins_timeout_ms", 10000, 100, 60000, "ms", "Insulation test: a valid reading must arrive within this (from K1/K2 close)"),
    ("session.ins_ok_ohm_v", 500, 1, 100000, "ohm/V", "Insulation above this: OK"),
    ("session.ins_fault_ohm_v", 100, 1, 100000, "ohm/V", "Insulation at or below this: fault, no charge (between: warning)"),
    ("session.bleed_v", 600, 0, 600, "0.1 V", "Bleed target (GB/T 18487.1 B.4.2: < 60 V)"),
    ("session.bleed_ms", 1000, 10, 10000, "ms", "Bleed must reach bleed_v within this"),
    ("session.unlock_v", 600, 0, 600, "0.1 V", "Unlock only when the gun voltage is below this"),
    # receive timeouts (spec section 4.2)
    ("session.brm_ms", 5000, 100, 60000, "ms", "BRM timeout from the first CRM 0x00 -> CEM BRM"),
    ("session.bcp_ms", 5000, 100, 60000, "ms", "BCP timeout from the first CRM 0xAA -> CEM BCP"),
    ("session.bro_ms", 5000, 100, 60000, "ms", "Any BRO timeout from the start of CML -> CEM BRO"),
    ("session.bro_aa_ms", 60000, 100, 600000, "ms", "BRO 0xAA timeout from the start of CML -> CEM BRO"),
    ("session.bcl_ms", 1000, 100, 60000, "ms", "BCL timeout (from CRO 0xAA / last BCL) -> CEM BCL"),
    ("session.bcs_ms", 5000, 100, 60000, "ms", "BCS timeout (from CRO 0xAA / last BCS) -> CEM BCS"),
    ("session.bst_ms", 5000, 100, 60000, "ms", "BST timeout after the first CST -> CEM BST, end"),
    ("session.bsd_ms", 10000, 100, 60000, "ms", "BSD timeout from the stop (first CST or BST) -> CEM BSD, end"),
    ("session.pause_ms", 600000, 1000, 3600000, "ms", "BSM pause longer than this ends the session"),
    ("session.rehs_max", 3, 0, 10, "-", "Re-handshakes (from CRM 0x00) allowed; one more timeout = interrupted, re-plug"),
    ("session.cem_hold_ms", 5000, 0, 60000, "ms", "CEM stays on the bus this long before CRM 0x00 (re-handshake) or aux off"),
    ("session.bcp_retry", False, None, None, "-",
     "BCP incompatible: false = end with CST (fault: no energy transfer); true = re-handshake like a timeout"),
    # pre-charge
    ("session.vchk_pct", 50, 1, 500, "0.1 %", "Battery voltage outside K1/K2 must be within this of the BCP value"),
    ("session.vchk_ms", 5000, 0, 60000, "ms", "Time after BRO 0xAA for the battery voltage to come within tolerance (vehicle K5/K6 close slowly; EN+ 5 s)"),
    ("session.pre_below", 50, 10, 100, "0.1 V", "Pre-charge target: this much below the battery voltage"),
    ("session.pre_lo", 10, 0, 200, "0.1 V", "Close K1/K2 only when the output is at least this below the battery"),
    ("session.pre_hi", 100, 1, 200, "0.1 V", "... and at most this below the battery"),
    ("session.pre_i", 100, 1, 1000, "0.1 A", "Pre-charge current limit (inrush < 20 A)"),
    ("session.pre_ms", 10000, 100, 60000, "ms", "Pre-charge must finish within this -> else fault stop (EN+ 60 s; vchk_ms + pre_ms should stay below the BMS's 60 s CRO 0xAA timeout)"),
    # charging control
    ("session.ramp_up", 200, 1, 100000, "0.1 A/s", "Current ramp up (start, resume, demand step up)"),
    ("session.ramp_down", 1000, 1, 100000, "0.1 A/s", "Current ramp down when the demand or a limit falls"),
    ("session.ramp_stop", 20000, 1000, 100000, "0.1 A/s", "Current ramp down on a stop (>= 100 A/s; default reaches 5 A within 100 ms from 200 A)"),
    ("session.i_off", 50, 0, 200, "0.1 A", "Open K1/K2 only below this current"),
    ("session.open_wait_ms", 1000, 10, 10000, "ms", "Current does not fall below i_off: open K1/K2 anyway after this (recorded)"),
    ("session.csd_tail_ms", 500, 0, 10000, "ms", "After BSD received and CSD sent: keep CSD this long, then aux off"),
    ("session.target_wh", 0, 0, 1000000, "Wh", "Charger-side stop: energy delivered (0 = none)"),
    ("session.target_min", 0, 0, 6000, "min", "Charger-side stop: charging minutes (0 = none)"),
    ("session.target_soc", 0, 0, 100, "%", "Charger-side stop: BCS SOC reached (0 = none)"),
)
config.register(CONFIG_SCHEMA)


def _cross(c):
    if c["session.cc1_lo_mv"] >= c["session.cc1_hi_mv"]:
        return "session.cc1_lo_mv must be below session.cc1_hi_mv"
    if c["session.pre_lo"] >= c["session.pre_hi"]:
        return "session.pre_lo must be below session.pre_hi"
    if not c["session.pre_lo"] <= c["session.pre_below"] <= c["session.pre_hi"]:
        return "session.pre_below must be within session.pre_lo..session.pre_hi"
    if c["session.ins_fault_ohm_v"] >= c["session.ins_ok_ohm_v"]:
        return "session.ins_fault_ohm_v must be below session.ins_ok_ohm_v"
    return None


if _cross not in config.CROSS_CHECKS:
    config.CROSS_CHECKS.append(_cross)


class SessionConfig:
    """Plain attributes: ``session.bcl_ms`` -> ``c.bcl_ms``; the charger
    rating as ``c.max_v, c.min_v, c.max_i, c.min_i, c.max_p``; the charger
    number ``c.charger_no`` (and its 4 little-endian bytes
    ``c.charger_no_le``) and region bytes ``c.region``."""

    def __init__(self, cfg=None):
        n = len(_S)
        for e in CONFIG_SCHEMA:
            v = config.get(cfg, e[0])
            if isinstance(e[1], bool):
                v = 1 if v else 0
            setattr(self, e[0][n:], v)
        self.max_v = config.get(cfg, "rating.max_v")
        self.min_v = config.get(cfg, "rating.min_v")
        self.max_i = config.get(cfg, "rating.max_i")
        self.min_i = config.get(cfg, "rating.min_i")
        self.max_p = config.get(cfg, "rating.max_p")
        self.charger_no = no = config.get(cfg, "charger.id")
        # CRM/CSD bytes 4 LE, split once here: a number >= 2**30 is a long
        # int on a 32-bit port, and every shift or mask of it would allocate
        # in each CRM (250 ms) and CSD frame
        self.charger_no_le = bytes((no & 0xFF, (no >> 8) & 0xFF, (no >> 16) & 0xFF,
                                    (no >> 24) & 0xFF))
        r = config.get(cfg, "charger.region")
        self.region = r.encode()[:3] if r else None
