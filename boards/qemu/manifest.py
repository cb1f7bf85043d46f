# Freeze the charger firmware, the SIL link and the QEMU board package into
# the qemu port's image (boards/qemu/QEMU_M3/mpconfigboard.mk points here).
# Paths are relative to this file.
import os

# Every firmware package and top-level module.
include("../manifest_firmware.py")

# The SIL link: the board on it and its wire format (shared with the unix
# SIL board).
module("simlink.py", base_path="../simlink")
module("simwire.py", base_path="../simlink")

# This board package, imported as `qemu.board`, `qemu.main`, ...
package("qemu", files=["board.py", "semihost.py", "ramdisk.py", "main.py"], base_path="..")

# Test image only (make firmware BOARD=QEMU_M3 VARIANT=test): the MicroPython
# unit tests of tests/mp/ and their runner, so the target runs them without
# compiling on the device (compiling a 700-line test would need more heap
# than the product has).
if os.environ.get("EVCHARGER_FREEZE_TESTS") == "1":
    _T = "../../tests/mp"
    for _f in sorted(os.listdir(_T)):
        if _f.endswith(".py") and _f not in ("console_demo.py",):
            module(_f, base_path=_T)
