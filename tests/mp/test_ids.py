"""gbt.ids on the real micropython: identifiers byte-exact to spec section 2."""
import micropython

import mptest
from gbt import ids

# (name, pgn, prio, charger_sends, id from the spec table)
TABLE = (
    ("CHM", 0x2600, 6, True, 0x1826F456),
    ("BHM", 0x2700, 6, False, 0x182756F4),
    ("CRM", 0x0100, 6, True, 0x1801F456),
    ("BRM", 0x0200, 7, False, 0x1C0256F4),
    ("BCP", 0x0600, 7, False, 0x1C0656F4),
    ("CTS", 0x0700, 6, True, 0x1807F456),
    ("CML", 0x0800, 6, True, 0x1808F456),
    ("BRO", 0x0900, 4, False, 0x100956F4),
    ("CRO", 0x0A00, 4, True, 0x100AF456),
    ("BCL", 0x1000, 6, False, 0x181056F4),
    ("BCS", 0x1100, 7, False, 0x1C1156F4),
    ("CCS", 0x1200, 6, True, 0x1812F456),
    ("BSM", 0x1300, 6, False, 0x181356F4),
    ("BMV", 0x1500, 7, False, 0x1C1556F4),
    ("BMT", 0x1600, 7, False, 0x1C1656F4),
    ("BSP", 0x1700, 7, False, 0x1C1756F4),
    ("BST", 0x1900, 4, False, 0x101956F4),
    ("CST", 0x1A00, 4, True, 0x101AF456),
    ("BSD", 0x1C00, 6, False, 0x181C56F4),
    ("CSD", 0x1D00, 6, True, 0x181DF456),
    ("BEM", 0x1E00, 2, False, 0x081E56F4),
    ("CEM", 0x1F00, 2, True, 0x081FF456),
)


def test_table_ids_and_pgn_constants():
    mptest.eq(len(TABLE), 22, "22 messages")
    for name, pgn, prio, c2b, cid in TABLE:
        mptest.eq(getattr(ids, "PGN_" + name), pgn, name + " PGN")
        sa, da = (ids.CHARGER, ids.BMS) if c2b else (ids.BMS, ids.CHARGER)
        mptest.eq(ids.can_id(prio, pgn, da, sa), cid, name + " id")
        mptest.eq(getattr(ids, "ID_" + name), cid, "ID_" + name)
        mptest.eq(ids.prio_for(pgn), prio, name + " prio")
        mptest.eq(ids.name_of(pgn), name, name + " name")


def test_split_id():
    for name, pgn, prio, c2b, cid in TABLE:
        mptest.eq(ids.pgn_of(cid), pgn, name)
        mptest.eq(ids.prio_of(cid), prio, name)
        mptest.eq(ids.sa_of(cid), ids.CHARGER if c2b else ids.BMS, name)
        mptest.eq(ids.da_of(cid), ids.BMS if c2b else ids.CHARGER, name)


def test_transport_ids():
    mptest.eq(ids.ID_TPCM_TX, 0x1CECF456)
    mptest.eq(ids.ID_TPDT_TX, 0x1CEBF456)
    mptest.eq(ids.ID_TPCM_RX, 0x1CEC56F4)
    mptest.eq(ids.ID_TPDT_RX, 0x1CEB56F4)
    mptest.eq(ids.can_id(7, ids.PGN_TPCM, ids.BMS, ids.CHARGER), ids.ID_TPCM_TX)
    mptest.eq(ids.can_id(7, ids.PGN_TPDT, ids.CHARGER, ids.BMS), ids.ID_TPDT_RX)
    mptest.eq(ids.pgn_of(0x1CEC56F4), 0xEC00)
    mptest.eq(ids.name_of(0xEB00), "TP.DT")


def test_pdu2_and_unknown():
    # PDU2 (PF >= 240): the low PGN byte is part of the PGN, broadcast
    cid = ids.can_id(3, 0xFECA, 0x12, 0x00)   # J1939 DM1
    mptest.eq(cid, 0x0CFECA00)
    mptest.eq(ids.pgn_of(cid), 0xFECA)
    mptest.eq(ids.da_of(cid), ids.GLOBAL)
    mptest.eq(ids.name_of(0xFECA), "?")
    mptest.eq(ids.name_of(0x2000), "?")      # DM1 of 27930: not decoded here
    # out-of-range arguments are masked, never raise
    mptest.eq(ids.can_id(9, 0x1000, 0x1F4, 0x156), ids.can_id(1, 0x1000, 0xF4, 0x56))


def test_no_allocation():
    cid = ids.ID_BCL
    micropython.heap_lock()
    try:
        for _ in range(100):
            p = ids.pgn_of(cid)
            ids.name_of(p)
            ids.sa_of(cid)
            ids.da_of(cid)
            ids.prio_of(cid)
            ids.can_id(6, p, 0x56, 0xF4)
            ids.prio_for(p)
    finally:
        micropython.heap_unlock()
    mptest.eq(p, 0x1000)


mptest.main(globals())
