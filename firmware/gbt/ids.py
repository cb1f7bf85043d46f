"""GB/T 27930 addresses, PGNs and 29-bit CAN identifiers (J1939-21 layout).

Identifier layout (spec section 1.2): ``P(3) R(1) DP(1) PF(8) PS(8) SA(8)``.
GB/T 27930 uses PDU1 only (PF < 240): PS is the destination address and the
PGN is ``PF << 8`` with its low byte zero.  PDU2 (PF >= 240, PS = group
extension) is handled too so that foreign J1939 traffic is classified
correctly instead of being misread.

Everything here is integer arithmetic on values below 2**30, so it stays in
MicroPython small ints (no heap) on 32-bit ports as well.
"""
from micropython import const

# Fixed addresses (spec 1.2)
CHARGER = const(0x56)
BMS = const(0xF4)
GLOBAL = const(0xFF)

# PGNs (spec section 2)
PGN_CRM = const(0x0100)
PGN_BRM = const(0x0200)
PGN_BCP = const(0x0600)
PGN_CTS = const(0x0700)
PGN_CML = const(0x0800)
PGN_BRO = const(0x0900)
PGN_CRO = const(0x0A00)
PGN_BCL = const(0x1000)
PGN_BCS = const(0x1100)
PGN_CCS = const(0x1200)
PGN_BSM = const(0x1300)
PGN_BMV = const(0x1500)
PGN_BMT = const(0x1600)
PGN_BSP = const(0x1700)
PGN_BST = const(0x1900)
PGN_CST = const(0x1A00)
PGN_BSD = const(0x1C00)
PGN_CSD = const(0x1D00)
PGN_BEM = const(0x1E00)
PGN_CEM = const(0x1F00)
PGN_CHM = const(0x2600)
PGN_BHM = const(0x2700)
PGN_TPCM = const(0xEC00)
PGN_TPDT = const(0xEB00)

# Charger transmit identifiers (prio, PGN, DA = BMS, SA = charger).
ID_CHM = const(0x1826F456)
ID_CRM = const(0x1801F456)
ID_CTS = const(0x1807F456)
ID_CML = const(0x1808F456)
ID_CRO = const(0x100AF456)
ID_CCS = const(0x1812F456)
ID_CST = const(0x101AF456)
ID_CSD = const(0x181DF456)
ID_CEM = const(0x081FF456)
ID_TPCM_TX = const(0x1CECF456)
ID_TPDT_TX = const(0x1CEBF456)

# BMS transmit identifiers (for simulators and tests; the charger filters on
# PGN + addresses, not on these).  BRM/BCP/BCS are the J1939 parameter-group
# ids of the reassembled multi-packet messages.
ID_BHM = const(0x182756F4)
ID_BRM = const(0x1C0256F4)
ID_BCP = const(0x1C0656F4)
ID_BRO = const(0x100956F4)
ID_BCL = const(0x181056F4)
ID_BCS = const(0x1C1156F4)
ID_BSM = const(0x181356F4)
ID_BMV = const(0x1C1556F4)
ID_BMT = const(0x1C1656F4)
ID_BSP = const(0x1C1756F4)
ID_BST = const(0x101956F4)
ID_BSD = const(0x181C56F4)
ID_BEM = const(0x081E56F4)
ID_TPCM_RX = const(0x1CEC56F4)
ID_TPDT_RX = const(0x1CEB56F4)


def can_id(prio, pgn, da, sa):
    """29-bit identifier for ``pgn`` sent by ``sa`` to ``da``.

    PDU1 (PF < 240): PS = ``da``.  PDU2: the PGN's low byte is the group
    extension and ``da`` is ignored (always broadcast)."""
    pgn &= 0x3FFFF
    if ((pgn >> 8) & 0xFF) < 240:
        return ((prio & 7) << 26) | ((pgn & 0x3FF00) << 8) | ((da & 0xFF) << 8) | (sa & 0xFF)
    return ((prio & 7) << 26) | (pgn << 8) | (sa & 0xFF)


def pgn_of(cid):
    """PGN of a 29-bit id (PDU1: the PS/destination byte is cleared)."""
    if ((cid >> 16) & 0xFF) < 240:
        return (cid >> 8) & 0x3FF00
    return (cid >> 8) & 0x3FFFF


def da_of(cid):
    """Destination address (PDU2 frames are broadcast: GLOBAL)."""
    if ((cid >> 16) & 0xFF) < 240:
        return (cid >> 8) & 0xFF
    return GLOBAL


def sa_of(cid):
    return cid & 0xFF


def prio_of(cid):
    return (cid >> 26) & 7


def name_of(pgn):
    """Short message name for diagnostics ("BRM"), "?" if not GB/T 27930.

    Returns interned string constants: no allocation."""
    if pgn == PGN_CHM:
        return "CHM"
    if pgn == PGN_BHM:
        return "BHM"
    if pgn == PGN_CRM:
        return "CRM"
    if pgn == PGN_BRM:
        return "BRM"
    if pgn == PGN_BCP:
        return "BCP"
    if pgn == PGN_CTS:
        return "CTS"
    if pgn == PGN_CML:
        return "CML"
    if pgn == PGN_BRO:
        return "BRO"
    if pgn == PGN_CRO:
        return "CRO"
    if pgn == PGN_BCL:
        return "BCL"
    if pgn == PGN_BCS:
        return "BCS"
    if pgn == PGN_CCS:
        return "CCS"
    if pgn == PGN_BSM:
        return "BSM"
    if pgn == PGN_BMV:
        return "BMV"
    if pgn == PGN_BMT:
        return "BMT"
    if pgn == PGN_BSP:
        return "BSP"
    if pgn == PGN_BST:
        return "BST"
    if pgn == PGN_CST:
        return "CST"
    if pgn == PGN_BSD:
        return "BSD"
    if pgn == PGN_CSD:
        return "CSD"
    if pgn == PGN_BEM:
        return "BEM"
    if pgn == PGN_CEM:
        return "CEM"
    if pgn == PGN_TPCM:
        return "TP.CM"
    if pgn == PGN_TPDT:
        return "TP.DT"
    return "?"


def prio_for(pgn):
    """Default priority of a GB/T 27930 PGN (spec section 2 table); 6 if unknown."""
    if pgn == PGN_BEM or pgn == PGN_CEM:
        return 2
    if pgn == PGN_BRO or pgn == PGN_CRO or pgn == PGN_BST or pgn == PGN_CST:
        return 4
    if (pgn == PGN_BRM or pgn == PGN_BCP or pgn == PGN_BCS or pgn == PGN_BMV
            or pgn == PGN_BMT or pgn == PGN_BSP or pgn == PGN_TPCM
            or pgn == PGN_TPDT):
        return 7
    return 6
