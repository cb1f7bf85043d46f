"""Target tests support: the firmware on the 32-bit Cortex-M QEMU board.

``make test`` builds the images first (``make target-image``); run alone,
the fixtures build what is missing (``host_tools.firmware``, which installs
the Debian toolchain and qemu-system-arm when it can).  Nothing here is
skipped silently: if the image cannot be built or booted the tests fail and
say why.
"""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from host_tools.sil.qemu import QemuMachine, ensure_image  # noqa: E402

# One tests/mp script per emulator boot: the script's cases run in order on
# the RAM filesystem, as ``micropython tests/mp/<script>.py`` does on unix.
RUN_SCRIPT = """import qemu.main as m
m.prepare()
import os, sys
os.mkdir('/tmp')
sys.argv[:] = ['{name}']
import mptest
try:
    import {name} as t
except SystemExit:
    pass
else:
    if '{name}' not in mptest.RAN:
        try:
            mptest.main(t.__dict__)
        except SystemExit:
            pass
"""

_results = {}


def run_mp_script(name: str, timeout: float = 600.0) -> dict:
    """Run ``tests/mp/<name>.py`` (frozen into the test image) on QEMU once;
    returns {case: (passed, text)} plus ``"__output__"``."""
    if name in _results:
        return _results[name]
    img = ensure_image("QEMU_M3", "test")
    m = QemuMachine(image=img)
    try:
        m.raw_repl()
        out, err = m.raw_exec(RUN_SCRIPT.format(name=name), timeout=timeout)
    finally:
        m.proc.kill()
        m.close()
    res = {"__output__": out + err}
    for line in out.splitlines():
        mm = re.match(r"(PASS|FAIL) (test_\w+)(.*)", line.strip())
        if mm:
            res[mm.group(2)] = (mm.group(1) == "PASS", mm.group(3))
    _results[name] = res
    return res


