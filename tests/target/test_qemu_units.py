"""The MicroPython unit tests of tests/mp/ on the 32-bit QEMU target.

The same scripts run on the unix port (tests/test_micropython_units.py);
here they run frozen into the QEMU test image (Cortex-M3, 30-bit small
ints, 32-bit objects), which is where an allocation that only a 32-bit port
makes (a value past 2**30 becomes a heap long int) or a port difference
(no ``time.gmtime`` on the qemu port) shows.  The heap_lock tests prove the
hot paths allocation-free on the target itself.

Not run here: the board-glue tests that import the unix fakes of
``machine``/``pyb`` (test_board_stm32, test_board_esp32, test_fastprot,
test_mcp2515): on a real port the built-in ``machine`` wins over the fake.
"""
import re

import pytest

from qemu_support import ROOT, run_mp_script

MP = ROOT / "tests" / "mp"
HOST_ONLY = {"test_board_stm32", "test_board_esp32", "test_fastprot", "test_mcp2515"}
SCRIPTS = sorted(p.stem for p in MP.glob("test_*.py") if p.stem not in HOST_ONLY)


def _cases(name):
    return re.findall(r"^def (test_\w+)\(", (MP / (name + ".py")).read_text(), re.M)


PARAMS = [(s, c) for s in SCRIPTS for c in _cases(s)]


@pytest.mark.parametrize("script,case", PARAMS, ids=["%s::%s" % p for p in PARAMS])
def test_on_qemu(script, case):
    res = run_mp_script(script)
    assert case in res, "no result for %s on the target:\n%s" % (case, res["__output__"][-3000:])
    ok, why = res[case]
    assert ok, "%s failed on the target: %s\n%s" % (case, why, res["__output__"][-3000:])
