"""`make firmware`: flashable images with the charger frozen in.

The QEMU image is built by `make test` before pytest starts (`make
target-image`); the PYBv1.1 image is built here if it is missing (about two
minutes on a 2-core machine: the stm32 port, the ST HAL and the frozen
firmware), because "`make firmware BOARD=PYBV11` produces a .dfu" is part of
what a charger maker relies on."""
import json
import os
import subprocess
import sys

import pytest

from host_tools import firmware as FW

ROOT = FW.ROOT


def test_qemu_image_has_the_firmware_frozen_and_the_pyboard_heap():
    rep = FW.sizes("QEMU_M3")
    assert rep["heap_bytes"] == 105632           # the PYBV11 build's _heap_end - _heap_start
    assert rep["frozen_bytes"] > 100_000         # every firmware module as bytecode in flash
    assert 0 < rep["flash_used"] < rep["flash_total"]
    saved = json.loads((FW.build_dir("QEMU_M3") / "sizes.json").read_text())
    assert saved["frozen_bytes"] == rep["frozen_bytes"]


def test_make_firmware_pybv11_produces_a_dfu_and_prints_sizes():
    dfu = FW.build_dir("PYBV11") / "firmware.dfu"
    if not dfu.exists():
        FW.build("PYBV11")
    r = subprocess.run([sys.executable, "-m", "host_tools.firmware", "info", "--board", "PYBV11"],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    assert "firmware.dfu" in r.stdout and "flash" in r.stdout and "heap" in r.stdout, r.stdout
    data = dfu.read_bytes()
    assert data[:5] == b"DfuSe"                   # the DfuSe container dfu-util flashes
    rep = FW.sizes("PYBV11")
    assert rep["flash_used"] < 1024 * 1024        # fits the F405's 1 MB
    assert rep["heap_bytes"] >= 100_000           # the GC heap the firmware gets
    assert rep["frozen_bytes"] > 100_000


def test_board_names_and_the_esp32_path():
    assert FW.resolve_board("stm32") == "PYBV11"
    assert FW.resolve_board("qemu") == "QEMU_M3"
    with pytest.raises(FW.BuildError, match="ESP-IDF"):
        FW.resolve_board("esp32")
    with pytest.raises(FW.BuildError, match="unknown board"):
        FW.resolve_board("ARDUINO")


def test_a_wrong_micropy_src_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPY_SRC", str(tmp_path))
    with pytest.raises(FW.BuildError, match="not a MicroPython source tree"):
        FW.source_tree()


def test_the_vendored_source_is_used_and_never_committed():
    monkeypatch_env = dict(os.environ)
    monkeypatch_env.pop("MICROPY_SRC", None)
    tree = FW.source_tree() if "MICROPY_SRC" not in os.environ else None
    if tree is not None and FW.VENDOR_TARBALL.exists():
        assert FW.BUILD in tree.parents
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True,
                             cwd=str(ROOT)).stdout.split()
    assert not [f for f in tracked if f.startswith("build/") or "/py/mpconfig.h" in f]
