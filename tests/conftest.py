"""Shared fixtures: where the real MicroPython binary and the firmware live."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
MP_TESTS = ROOT / "tests" / "mp"
sys.path.insert(0, str(ROOT))

# tests/mp/ holds MicroPython scripts, run by test_micropython_units.py, not by CPython.
collect_ignore_glob = ["mp/*"]


def micropython_bin():
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if not found:
        pytest.fail("micropython binary not found: run `make test` (it builds .venv)")
    return found


def mp_path(*extra):
    """MICROPYPATH for running firmware modules on the unix port."""
    parts = [str(p) for p in extra] + [str(FIRMWARE), str(MP_TESTS)]
    return os.pathsep.join(parts)


def run_mp(script, args=(), heapsize=None, extra_path=(), timeout=120, cwd=None):
    """Run a MicroPython script file; returns CompletedProcess (text)."""
    cmd = [micropython_bin()]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    cmd += [str(script)] + list(args)
    env = dict(os.environ, MICROPYPATH=mp_path(*extra_path))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd or str(ROOT), stdin=subprocess.DEVNULL)


@pytest.fixture
def mp():
    return run_mp
