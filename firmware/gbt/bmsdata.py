"""What the charger knows about the vehicle: the decoded BMS messages.

One preallocated ``BmsData`` per session.  ``gbt.messages`` decoders write
into it; the session, the safety checks, telemetry and the console read it.
All values are scaled integers in the units named per field.  ``NA`` (-1)
means "not received / not available" (the BMS sent 0xFF.. fill, or never
sent the message); checks that need a field that is ``NA`` are inactive.

Currents are stored as positive *charging* current (0.1 A): the wire
format uses -400 A offset with negative = charge, so
``charge_dA = 4000 - raw``.
Temperatures are stored in whole degC (wire offset -50 already removed).

Most fields are attributes of ``BmsData`` itself (what the session, the
control loop and the checks read every tick: one attribute load).  Two
groups of fields live in small value objects, each the content of
messages read rarely: ``bms.cells`` (``CellDetail``: the optional BMV/BMT
extremes) and ``bms.end`` (``EndOfCharge``: BST, the vehicle's stop cause,
and BSD, its statistics).  Both are made once with the ``BmsData`` and
reset in place with it: nothing allocates.
"""

import micropython
from micropython import const

NA = -1

# Decoder verdicts and wire-field facts shared by ``gbt.dec`` and
# ``gbt.decdetail`` (one definition; read there as globals, like NA).
OK = const(0)
E_LEN = const(1)            # length wrong (or n outside the buffer): ignored
E_RANGE = const(2)          # a value outside its legal range: rejected
E_UNKNOWN = const(3)        # not a BMS -> charger PGN
T_OFFSET = const(50)        # -50 degC wire offset
CELL_MAX = const(2400)      # 24.00 V: cell voltage field range (0.01 V)
CELL_NA = const(0xFFF)      # 12-bit cell voltage "not available"
BMT_MAX = const(128)        # temperature probes (BMT bytes, BSM probe numbers)


def bad_len(data, n, need):
    """``n`` short of ``need``, or larger than the buffer (reading past it
    would be a caller bug, reported as a length error, not an IndexError)."""
    return n < need or n > len(data)


@micropython.viper
def _zero(b, n: int):
    """b[0:n] = 0 (machine code: part of the plug-in tick)."""
    p = ptr8(b)
    i = 0
    while i < n:
        p[i] = 0
        i += 1


class CellDetail:
    """BMV / BMT (optional): extremes over all cells / probes."""

    def reset(self):
        self.bmv_cells = 0           # cells with a value in the last BMV
        self.cell_min_v = NA         # 0.01 V lowest cell seen in BMV
        self.cell_min_no = NA
        self.bmv_max_v = NA          # 0.01 V highest cell seen in BMV
        self.bmt_probes = 0
        self.bmt_min = NA            # degC
        self.bmt_max = NA            # degC

    __init__ = reset


class EndOfCharge:
    """BST (the vehicle's stop cause, raw 2-bit codes as on the wire) and
    BSD (its end-of-charge statistics)."""

    def reset(self):
        # BST
        self.bst_reason = NA
        self.bst_fault = NA
        self.bst_error = NA
        # BSD
        self.end_soc = NA            # 1 %
        self.end_cell_min_v = NA     # 0.01 V
        self.end_cell_max_v = NA     # 0.01 V
        self.end_temp_min = NA       # degC
        self.end_temp_max = NA       # degC

    __init__ = reset


class BmsData:
    def __init__(self):
        self.vin = bytearray(17)
        self.cells = CellDetail()    # BMV / BMT
        self.end = EndOfCharge()     # BST / BSD
        self.reset()

    def reset(self):
        # The per-tick messages' fields first: a key the instance's hash
        # table got early is found with fewer probes (BCL/BCS/BSM are read
        # by the control loop and the checks every tick)
        # BCL
        self.req_v = NA              # 0.1 V demand
        self.req_i = NA              # 0.1 A (charge) demand
        self.req_mode = NA           # 1 = CV, 2 = CC
        # BCS
        self.meas_v = NA             # 0.1 V measured by BMS
        self.meas_i = NA             # 0.1 A (charge) measured by BMS
        self.cell_max_v = NA         # 0.01 V highest cell
        self.cell_max_group = NA     # 0..15
        self.soc = NA                # 1 %
        self.remain_min = NA         # minutes
        # BSM
        self.cell_max_no = NA        # 1..256
        self.temp_max = NA           # degC
        self.temp_max_no = NA        # 1..128
        self.temp_min = NA           # degC
        self.temp_min_no = NA        # 1..128
        self.st_cell_v = 0           # 2-bit states: 0 normal, 1 high/fault, 2 low
        self.st_soc = 0
        self.st_oc = 0
        self.st_ot = 0
        self.st_ins = 0
        self.st_conn = 0
        self.permit = 1              # BSM charging permitted: 1 yes, 0 pause
        # BRO
        self.bro = NA                # 0x00 / 0xAA
        # BEM (raw 4 bytes as int, little-endian)
        self.bem = NA
        # BCP
        self.max_cell_v = NA         # 0.01 V, max permitted cell charging voltage
        self.max_i = NA              # 0.1 A (charge), max permitted charging current
        self.energy = NA             # 0.1 kWh nominal total energy
        self.max_v = NA              # 0.1 V, max permitted total charging voltage
        self.max_temp = NA           # degC, max permitted temperature
        self.bcp_soc = NA            # 0.1 %
        self.bcp_v = NA              # 0.1 V, present battery voltage
        # BHM
        self.bhm_max_v = NA          # 0.1 V, max permitted total charging voltage
        # BRM
        self.brm_len = 0             # bytes actually received (8..49)
        self.brm_version = NA        # 3-byte version as int, 0x000101 = V1.1
        self.batt_type = NA          # 1..8, 0xFF other
        self.rated_ah = NA           # 0.1 Ah
        self.rated_v = NA            # 0.1 V
        self.vin_len = 0             # 0 = no VIN sent
        _zero(self.vin, 17)
        self.cells.reset()           # BMV / BMT
        self.end.reset()             # BST / BSD

    def vin_str(self):
        """VIN as text for records (allocates: not for the hot path)."""
        if not self.vin_len:
            return ""
        return bytes(self.vin[:self.vin_len]).decode()
