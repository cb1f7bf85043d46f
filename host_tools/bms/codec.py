"""GB/T 27930-2015 message catalogue, BMS-side encoders and charger-side decoders.

Host-side (CPython) twin of the firmware codecs, written from
``shared/spec/gbt27930.md``.  Physical values are floats in SI-ish units
(V, A, degC, %, kWh, minutes); *charging current is positive* here, the wire
format's -400 A offset with "negative = charge" is handled inside.

Encoders take a dict of named fields (see ``FIELDS``) so that scenario files
can override any single field by name; unknown field names raise ``KeyError``
early (a typo in a scenario should not silently do nothing).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

CHARGER = 0x56
BMS = 0xF4
GLOBAL = 0xFF

PGN_TPCM = 0xEC00
PGN_TPDT = 0xEB00


@dataclass(frozen=True)
class MsgDef:
    name: str
    pgn: int
    prio: int
    length: int          # nominal DLC / payload length (0 = variable)
    period_ms: int
    sender: str          # "C" charger, "B" BMS
    tp: bool = False     # sent with the transport protocol (payload > 8)


_DEFS = [
    MsgDef("CHM", 0x2600, 6, 3, 250, "C"),
    MsgDef("BHM", 0x2700, 6, 2, 250, "B"),
    MsgDef("CRM", 0x0100, 6, 8, 250, "C"),
    MsgDef("BRM", 0x0200, 7, 49, 250, "B", True),
    MsgDef("BCP", 0x0600, 7, 13, 500, "B", True),
    MsgDef("CTS", 0x0700, 6, 7, 500, "C"),
    MsgDef("CML", 0x0800, 6, 8, 250, "C"),
    MsgDef("BRO", 0x0900, 4, 1, 250, "B"),
    MsgDef("CRO", 0x0A00, 4, 1, 250, "C"),
    MsgDef("BCL", 0x1000, 6, 5, 50, "B"),
    MsgDef("BCS", 0x1100, 7, 9, 250, "B", True),
    MsgDef("CCS", 0x1200, 6, 8, 50, "C"),
    MsgDef("BSM", 0x1300, 6, 7, 250, "B"),
    MsgDef("BMV", 0x1500, 7, 0, 10000, "B", True),
    MsgDef("BMT", 0x1600, 7, 0, 10000, "B", True),
    MsgDef("BSP", 0x1700, 7, 0, 10000, "B", True),
    MsgDef("BST", 0x1900, 4, 4, 10, "B"),
    MsgDef("CST", 0x1A00, 4, 4, 10, "C"),
    MsgDef("BSD", 0x1C00, 6, 7, 250, "B"),
    MsgDef("CSD", 0x1D00, 6, 8, 250, "C"),
    MsgDef("BEM", 0x1E00, 2, 4, 250, "B"),
    MsgDef("CEM", 0x1F00, 2, 4, 250, "C"),
]

MESSAGES: Dict[str, MsgDef] = {d.name: d for d in _DEFS}
BY_PGN: Dict[int, MsgDef] = {d.pgn: d for d in _DEFS}
CHARGER_MESSAGES = tuple(d.name for d in _DEFS if d.sender == "C")
BMS_MESSAGES = tuple(d.name for d in _DEFS if d.sender == "B")

# Battery type codes (BRM byte 4).
BATTERY_TYPES = {"lead-acid": 1, "nimh": 2, "lfp": 3, "lmo": 4, "lco": 5,
                 "ncm": 6, "polymer": 7, "lto": 8, "other": 0xFF}

# BST bit masks (2-bit fields with value 01 in place).
BST_REASON = {"soc": 0x01, "total_voltage": 0x04, "cell_voltage": 0x10, "charger": 0x40}
BST_FAULT = {"insulation": 0x0001, "connector_overtemp": 0x0004, "bms_overtemp": 0x0010,
             "connector": 0x0040, "battery_overtemp": 0x0100, "relay": 0x0400,
             "cc2": 0x1000, "other": 0x4000}
BST_ERROR = {"current": 0x01, "voltage": 0x04}
# CST bit masks.
CST_REASON = {"condition": 0x01, "manual": 0x04, "fault": 0x10, "bms": 0x40}
CST_FAULT = {"overtemp": 0x001, "connector": 0x004, "internal_overtemp": 0x010,
             "no_energy": 0x040, "estop": 0x100, "other": 0x400}
CST_ERROR = {"current": 0x01, "voltage": 0x04}
# BEM bits (little-endian 32-bit image of the 4 bytes).
BEM_BITS = {"crm00": 0x00000001, "crmaa": 0x00000004, "cml": 0x00000100,
            "cro": 0x00000400, "ccs": 0x00010000, "cst": 0x00040000, "csd": 0x01000000}
# CEM bits, and the BMS message whose timeout each reports.
CEM_BITS = {"BRM": 0x00000001, "BCP": 0x00000100, "BRO": 0x00000400, "BCS": 0x00010000,
            "BCL": 0x00040000, "BST": 0x00100000, "BSD": 0x01000000}


def can_id(prio: int, pgn: int, da: int, sa: int) -> int:
    """29-bit J1939 PDU1 identifier."""
    return ((prio & 7) << 26) | (((pgn >> 8) & 0xFF) << 16) | ((da & 0xFF) << 8) | (sa & 0xFF)


def split_id(cid: int):
    """-> (prio, pgn, da, sa) of a PDU1 identifier."""
    return (cid >> 26) & 7, ((cid >> 16) & 0xFF) << 8, (cid >> 8) & 0xFF, cid & 0xFF


def msg_id(name: str, da: int = CHARGER, sa: int = BMS) -> int:
    d = MESSAGES[name]
    return can_id(d.prio, d.pgn, da, sa)


def mask_of(names, table: Mapping[str, int]) -> int:
    """OR of named bits; ints pass through; a single name may be a str."""
    if names is None:
        return 0
    if isinstance(names, int):
        return names
    if isinstance(names, str):
        names = [names]
    m = 0
    for n in names:
        if isinstance(n, int):
            m |= n
        elif n not in table:
            raise KeyError("unknown flag %r (known: %s)" % (n, ", ".join(table)))
        else:
            m |= table[n]
    return m


# ---------------------------------------------------------------- scaling
def _u16(x: float, res: float, offset: float = 0.0) -> int:
    return max(0, min(0xFFFF, int(round((x - offset) / res))))


def _cur_raw(amps_charge: float) -> int:
    """Charging current (A, positive) -> raw with -400 A offset, negative = charge."""
    return max(0, min(0xFFFF, int(round((400.0 - amps_charge) * 10))))


def _cur_phys(raw: int) -> float:
    return round(400.0 - raw * 0.1, 1)


def _temp_raw(c: float) -> int:
    return max(0, min(0xFF, int(round(c + 50))))


def _pad(buf: bytes, n: int) -> bytes:
    return bytes(buf[:n]) + b"\xff" * (n - len(buf))


def _ascii(s: Any, n: int) -> bytes:
    if s is None:
        return b"\xff" * n
    b = s.encode("ascii") if isinstance(s, str) else bytes(s)
    return _pad(b, n)


# ---------------------------------------------------------------- BMS encoders
# Default field values; the simulator fills them from its pack and params.
FIELDS: Dict[str, Dict[str, Any]] = {
    "BHM": {"max_voltage_v": 750.0},
    "BRM": {"version": 0x000101, "battery_type": 3, "capacity_ah": 150.0,
            "rated_voltage_v": 307.2, "manufacturer": "SIMB", "pack_serial": 1,
            "prod_year": 2024, "prod_month": 1, "prod_day": 1, "cycles": 0,
            "ownership": 1, "vin": None, "sw_version": None, "length": 49},
    "BCP": {"max_cell_voltage_v": 3.65, "max_current_a": 250.0, "energy_kwh": 46.0,
            "max_voltage_v": 350.4, "max_temp_c": 55, "soc_pct": 30.0, "voltage_v": 315.0},
    "BRO": {"value": 0xAA},
    "BCL": {"voltage_v": 345.6, "current_a": 0.0, "mode": 2},
    "BCS": {"voltage_v": 0.0, "current_a": 0.0, "max_cell_v": 0.0, "max_cell_group": 0,
            "soc_pct": 0, "remaining_min": 600},
    "BSM": {"max_cell_no": 1, "max_temp_c": 25, "max_temp_no": 1, "min_temp_c": 25,
            "min_temp_no": 1, "cell_voltage": 0, "soc_state": 0, "overcurrent": 0,
            "overtemp": 0, "insulation": 0, "connector": 0, "permit": 1},
    "BMV": {"cells": (), "group": 0},
    "BMT": {"temps": ()},
    "BSP": {"data": b""},
    "BST": {"reason": 0, "fault": 0, "error": 0},
    "BSD": {"soc_pct": 0, "min_cell_v": 0.0, "max_cell_v": 0.0, "min_temp_c": 25, "max_temp_c": 25},
    "BEM": {"bits": 0},
}


def _enc_bhm(f):
    return struct.pack("<H", _u16(f["max_voltage_v"], 0.1))


def _enc_brm(f):
    v = int(f["version"])
    out = bytearray(v.to_bytes(3, "little"))
    out.append(int(f["battery_type"]) & 0xFF)
    out += struct.pack("<HH", _u16(f["capacity_ah"], 0.1), _u16(f["rated_voltage_v"], 0.1))
    out += _ascii(f["manufacturer"], 4)
    out += struct.pack("<I", int(f["pack_serial"]) & 0xFFFFFFFF)
    out += bytes([max(0, min(255, int(f["prod_year"]) - 1985)), int(f["prod_month"]) & 0xFF,
                  int(f["prod_day"]) & 0xFF])
    out += (int(f["cycles"]) & 0xFFFFFF).to_bytes(3, "little")
    out += bytes([int(f["ownership"]) & 0xFF, 0xFF])
    out += _ascii(f["vin"], 17)
    sw = f["sw_version"]
    out += _ascii(bytes.fromhex(sw) if isinstance(sw, str) else sw, 8)
    n = int(f["length"])
    return _pad(bytes(out), n) if n <= len(out) else bytes(out) + b"\xff" * (n - len(out))


def _enc_bcp(f):
    return struct.pack("<HHHHBHH", _u16(f["max_cell_voltage_v"], 0.01), _cur_raw(f["max_current_a"]),
                       _u16(f["energy_kwh"], 0.1), _u16(f["max_voltage_v"], 0.1),
                       _temp_raw(f["max_temp_c"]), _u16(f["soc_pct"], 0.1), _u16(f["voltage_v"], 0.1))


def _enc_bro(f):
    return bytes([int(f["value"]) & 0xFF])


def _enc_bcl(f):
    return struct.pack("<HHB", _u16(f["voltage_v"], 0.1), _cur_raw(f["current_a"]), int(f["mode"]) & 0xFF)


def _cellword(v: float, group: int) -> int:
    return (min(0xFFF, max(0, int(round(v * 100)))) | ((int(group) & 0xF) << 12))


def _enc_bcs(f):
    return struct.pack("<HHHBH", _u16(f["voltage_v"], 0.1), _cur_raw(f["current_a"]),
                       _cellword(f["max_cell_v"], f["max_cell_group"]),
                       max(0, min(100, int(round(f["soc_pct"])))),
                       max(0, min(600, int(f["remaining_min"]))))


def _enc_bsm(f):
    b6 = ((int(f["cell_voltage"]) & 3) | (int(f["soc_state"]) & 3) << 2
          | (int(f["overcurrent"]) & 3) << 4 | (int(f["overtemp"]) & 3) << 6)
    b7 = ((int(f["insulation"]) & 3) | (int(f["connector"]) & 3) << 2
          | (int(f["permit"]) & 3) << 4 | 0xC0)
    return bytes([max(0, min(255, int(f["max_cell_no"]) - 1)), _temp_raw(f["max_temp_c"]),
                  max(0, min(255, int(f["max_temp_no"]) - 1)), _temp_raw(f["min_temp_c"]),
                  max(0, min(255, int(f["min_temp_no"]) - 1)), b6, b7])


def _enc_bmv(f):
    return b"".join(struct.pack("<H", _cellword(v, f["group"])) for v in f["cells"])


def _enc_bmt(f):
    return bytes(_temp_raw(t) for t in f["temps"])


def _enc_bsp(f):
    d = f["data"]
    return bytes.fromhex(d) if isinstance(d, str) else bytes(d)


def _enc_bst(f):
    reason = mask_of(f["reason"], BST_REASON)
    fault = mask_of(f["fault"], BST_FAULT)
    error = mask_of(f["error"], BST_ERROR)
    return bytes([reason & 0xFF]) + struct.pack("<H", fault & 0xFFFF) + bytes([(error & 0x0F) | 0xF0])


def _enc_bsd(f):
    return struct.pack("<BHHBB", max(0, min(100, int(round(f["soc_pct"])))),
                       _u16(f["min_cell_v"], 0.01), _u16(f["max_cell_v"], 0.01),
                       _temp_raw(f["min_temp_c"]), _temp_raw(f["max_temp_c"]))


def _enc_bem(f):
    bits = mask_of(f["bits"], BEM_BITS)
    b = bits.to_bytes(4, "little")
    # Fields not defined by the standard are filled with 1s (clause 7.9).
    return bytes([b[0] | 0xF0, b[1] | 0xF0, b[2] | 0xF0, b[3] | 0xFC])


_ENCODERS = {"BHM": _enc_bhm, "BRM": _enc_brm, "BCP": _enc_bcp, "BRO": _enc_bro,
             "BCL": _enc_bcl, "BCS": _enc_bcs, "BSM": _enc_bsm, "BMV": _enc_bmv,
             "BMT": _enc_bmt, "BSP": _enc_bsp, "BST": _enc_bst, "BSD": _enc_bsd, "BEM": _enc_bem}


def encode(name: str, fields: Optional[Mapping[str, Any]] = None) -> bytes:
    """Payload of BMS message ``name`` from ``FIELDS[name]`` updated by ``fields``."""
    f = dict(FIELDS[name])
    for k, v in (fields or {}).items():
        if k not in f:
            raise KeyError("%s has no field %r (fields: %s)" % (name, k, ", ".join(f)))
        f[k] = v
    return _ENCODERS[name](f)


def apply_bytes(payload: bytes, raw: Optional[str] = None,
                set_bytes: Optional[Mapping[Any, int]] = None) -> bytes:
    """Raw overrides: ``raw`` hex replaces the payload, ``set_bytes`` {index: value} patches it
    (index 0-based; the payload grows with 0xFF if needed)."""
    out = bytearray(bytes.fromhex(raw.replace(" ", "")) if raw is not None else payload)
    for k, v in (set_bytes or {}).items():
        i = int(k)
        while len(out) <= i:
            out.append(0xFF)
        out[i] = int(v) & 0xFF
    return bytes(out)


# ---------------------------------------------------------------- charger decoders
def decode(name: str, data: bytes) -> Dict[str, Any]:
    """Charger message payload -> dict of physical values.  Short payloads decode
    the fields that are complete; missing ones are absent from the dict."""
    d = bytes(data)
    n = len(d)
    out: Dict[str, Any] = {}
    if name == "CHM":
        if n >= 3:
            out["version"] = int.from_bytes(d[:3], "little")
    elif name == "CRM":
        if n >= 1:
            out["result"] = d[0]
        if n >= 5:
            out["charger_no"] = int.from_bytes(d[1:5], "little")
        if n >= 8:
            out["region"] = d[5:8]
    elif name == "CTS":
        if n >= 7:
            bcd = lambda b: (b >> 4) * 10 + (b & 0xF)  # noqa: E731
            out.update(second=bcd(d[0]), minute=bcd(d[1]), hour=bcd(d[2]), day=bcd(d[3]),
                       month=bcd(d[4]), year=bcd(d[6]) * 100 + bcd(d[5]))
    elif name == "CML":
        if n >= 8:
            mx, mn, imx, imn = struct.unpack_from("<HHHH", d)
            out.update(max_voltage_v=mx / 10, min_voltage_v=mn / 10,
                       max_current_a=_cur_phys(imx), min_current_a=_cur_phys(imn))
    elif name in ("CRO",):
        if n >= 1:
            out["value"] = d[0]
    elif name == "CCS":
        if n >= 4:
            v, i = struct.unpack_from("<HH", d)
            out.update(voltage_v=v / 10, current_a=_cur_phys(i))
        if n >= 6:
            out["minutes"] = struct.unpack_from("<H", d, 4)[0]
        if n >= 7:
            out["permit"] = d[6] & 3
    elif name == "CST":
        if n >= 4:
            out.update(reason=d[0], fault=struct.unpack_from("<H", d, 1)[0], error=d[3])
    elif name == "CSD":
        if n >= 8:
            t, e, no = struct.unpack_from("<HHI", d)
            out.update(minutes=t, energy_kwh=e / 10, charger_no=no)
    elif name == "CEM":
        if n >= 4:
            out["bits"] = int.from_bytes(d[:4], "little")
    return out


def bits_set(mask: int, table: Mapping[str, int]):
    """Names of the 2-bit fields whose value is 01 in ``mask``."""
    return [k for k, m in table.items() if (mask & (m * 3)) == m]


def hexs(data: bytes) -> str:
    return " ".join("%02X" % b for b in bytes(data))
