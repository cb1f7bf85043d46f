"""Deployment (D-3): image flash (default), .mpy install (--mpy), config check.

- the image path's dry run prints the exact commands for each STM32 board
  (build when the image is missing or stale, probe, bootloader, dfu-util,
  wait, clean, config.json, main.py, reset) and runs none of them;
- the real image path, with a fake ``mpremote`` and ``dfu-util`` on PATH that
  record their arguments and act like the board (the port disappears at the
  bootloader and comes back a second after the flash), runs them in that
  order, waits for the port, and leaves config.json, the one-line main.py and
  no shadowing firmware files on the "board" (the clean script runs on the
  real micropython);
- --mpy is refused, quoting the measured heap need against the board's heap,
  on PYBV11 and ESP32 without PSRAM, and allowed on NUCLEO_H743ZI and ESP32
  --psram; an ESP32 image explains the ESP-IDF path;
- the --mpy dry run prints the exact mpy-cross/mpremote lines; the build has
  a .mpy for every firmware and board module and that tree imports on the
  real micropython;
- a bad configuration (out of range, unknown key, wrong type, cross-field
  rule, broken JSON) is refused with the firmware's validation message
  before anything is built, flashed or copied;
- the board package lists match boards/<b>/manifest.py;
- a real --mpy deploy with the real mpremote into a running console (the
  console demo firmware, whose working directory is a temporary directory
  standing in for the board's filesystem) installs a tree that imports.
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


# -- fake board tools ----------------------------------------------------------

FAKE_MPREMOTE = r"""#!%(python)s
# Fake mpremote: records its arguments and acts like the board.
import json, os, shutil, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["mpremote"] + args) + "\n")
fs = os.environ["FAKE_FS"]
assert args[0] == "connect", args
port, cmd = args[1], args[2:]
if not os.path.exists(port):
    sys.exit("mpremote: failed to access %%s (it may be in use by another program)" %% port)
if cmd[0] == "exec":
    print("STAGE", os.environ.get("FAKE_STAGE", "0"))
elif cmd == ["bootloader"]:
    os.remove(port)                 # the board leaves USB serial for its DFU bootloader
elif cmd[0] == "run":               # the script runs on the "board": micropython in FAKE_FS
    r = subprocess.run([os.environ["FAKE_MICROPYTHON"], os.path.abspath(cmd[1])], cwd=fs)
    sys.exit(r.returncode)
elif cmd[:2] == ["fs", "cp"] and len(cmd) == 4 and cmd[3].startswith(":"):
    shutil.copy(cmd[2], os.path.join(fs, cmd[3][1:]))
elif cmd == ["reset"]:
    pass
else:
    sys.exit("fake mpremote: unexpected %%r" %% cmd)
"""

FAKE_DFU_UTIL = r"""#!%(python)s
# Fake dfu-util: records its arguments; the board must be in DFU mode (its
# serial port gone); after the download the board boots and its serial port
# comes back one second later.
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["dfu-util"] + args) + "\n")
port = os.environ["FAKE_PORT"]
if os.path.exists(port):
    sys.exit("dfu-util: the board is not in DFU mode (its serial port is still there)")
img = args[args.index("-D") + 1]
if not os.path.isfile(img):
    sys.exit("dfu-util: cannot open %%s" %% img)
subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1.0); "
                  "open(sys.argv[1], 'w').close()", port], start_new_session=True)
print("Download done.")
"""


class Fakes:
    def __init__(self, tmp: Path, monkeypatch):
        self.bin = tmp / "fakebin"
        self.bin.mkdir()
        for name, text in (("mpremote", FAKE_MPREMOTE), ("dfu-util", FAKE_DFU_UTIL)):
            p = self.bin / name
            p.write_text(text % {"python": sys.executable})
            p.chmod(0o755)
        self.log = tmp / "calls.jsonl"
        self.fs = tmp / "boardfs"
        self.fs.mkdir()
        self.port = tmp / "ttyFAKE0"
        self.image = tmp / "firmware.dfu"
        self.image.write_bytes(b"DfuSe\x01fake image")
        monkeypatch.setenv("PATH", "%s%s%s" % (self.bin, os.pathsep, os.environ["PATH"]))
        monkeypatch.setenv("FAKE_LOG", str(self.log))
        monkeypatch.setenv("FAKE_FS", str(self.fs))
        monkeypatch.setenv("FAKE_PORT", str(self.port))
        monkeypatch.setenv("FAKE_MICROPYTHON", micropython_bin())
        monkeypatch.delenv("FAKE_STAGE", raising=False)

    def board_port(self) -> Path:
        self.port.touch()
        return self.port

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(l) for l in self.log.read_text().splitlines()]


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    f = Fakes(tmp_path, monkeypatch)
    assert deploy.tool("mpremote") == str(f.bin / "mpremote")     # found on PATH first
    assert deploy.tool("dfu-util") == str(f.bin / "dfu-util")
    return f


def _site(tmp_path, **kw):
    cfg = tmp_path / "site.json"
    cfg.write_text(json.dumps(kw or {"h8.ma": 25, "hw.wdt_ms": 2000, "charger.id": 7}))
    return cfg


def _image_steps(fakes, port, img, out, cfg=None, reset=True, bootloader=True, wait=30):
    """The command lines of the image path, after the image step."""
    mp = [str(fakes.bin / "mpremote"), "connect", str(port)]
    lines = []
    if bootloader:
        lines += [shlex.join(mp + ["exec", deploy.PROBE]), shlex.join(mp + ["bootloader"])]
    lines += [shlex.join([str(fakes.bin / "dfu-util"), "-w", "-d", "0483:df11", "-a", "0",
                          "-s", ":leave", "-D", str(img)]),
              "# wait up to %d s for %s to come back" % (wait, port),
              shlex.join(mp + ["run", str(out / "clean.py")])]
    if cfg:
        lines.append(shlex.join(mp + ["fs", "cp", str(cfg), ":config.json"]))
    lines.append(shlex.join(mp + ["fs", "cp", str(out / "main.py"), ":main.py"]))
    if reset:
        lines.append(shlex.join(mp + ["reset"]))
    return lines


# -- the image path (default) ----------------------------------------------------

@pytest.mark.parametrize("board, name", [("PYBV11", "PYBV11"), ("stm32", "PYBV11"),
                                         ("NUCLEO_H743ZI", "NUCLEO_H743ZI")])
def test_image_dry_run_prints_exact_commands(tmp_path, fakes, board, name):
    port = fakes.board_port()
    cfg = _site(tmp_path)
    rc, lines = run_deploy("--port", str(port), "--board", board, "--config", str(cfg),
                           "--image", str(fakes.image), "--dry-run",
                           "--build-dir", str(tmp_path / "build"))
    assert rc == 0, lines
    out = tmp_path / "build" / "deploy" / name
    assert lines == [
        "# 1. configuration check (firmware validation on micropython)",
        shlex.join([sys.executable, "-m", "host_tools.config_check", str(cfg), "--board",
                    "stm32"]),
        "# 2. image %s (given)" % fakes.image,
        "# 3. flash and configure (dry run: not executed)",
    ] + _image_steps(fakes, port, fakes.image, out, cfg) + ["# dry run: nothing flashed"]
    assert fakes.calls() == []                          # a dry run runs nothing
    assert (out / "main.py").read_text() == "import stm32.main; stm32.main.run()\n"
    # the clean script removes both forms of every module that would shadow
    # the frozen one, and the emptied package directories
    clean = (out / "clean.py").read_text()
    assert "('gbt/',(" in clean and "'session'" in clean and "('stm32/',(" in clean
    assert "('.py', '.mpy')" in clean and "os.rmdir(d)" in clean


@pytest.mark.parametrize("state", ["missing", "stale", "current"])
def test_image_built_when_missing_or_stale(tmp_path, fakes, monkeypatch, state):
    img = tmp_path / "fw" / "PYBV11" / "firmware.dfu"
    monkeypatch.setattr(deploy, "image_path", lambda board: img)
    if state != "missing":
        img.parent.mkdir(parents=True)
        img.write_bytes(b"DfuSe")
        t = 1_000_000_000 if state == "stale" else time.time() + 3600
        os.utime(img, (t, t))
    port = fakes.board_port()
    rc, lines = deploy_inproc(port=str(port), board="PYBV11", dry_run=True,
                              build_root=tmp_path / "build")
    assert rc == 0, lines
    build = shlex.join([sys.executable, "-m", "host_tools.firmware", "build", "--board",
                        "PYBV11"])
    steps = _image_steps(fakes, port, img, tmp_path / "build" / "deploy" / "PYBV11")
    if state == "current":
        assert "# 2. image %s (5 bytes, up to date)" % img in lines
        assert build not in lines
        assert lines[lines.index(steps[0]):-1] == steps
    else:
        why = "missing" if state == "missing" else "older than "
        assert any(l.startswith("# 2. build the image (%s: %s" % (img, why)) for l in lines)
        assert lines[lines.index(build):-1] == [build] + steps     # built before the probe
    assert fakes.calls() == []


def test_image_real_run_order_with_fake_tools(tmp_path, fakes):
    """Not a dry run: probe, bootloader, flash, wait for the port, clean,
    config.json, main.py, reset -- in that order, each once; the fake
    mpremote fails while the port is away, so the deploy must wait."""
    port = fakes.board_port()
    cfg = _site(tmp_path)
    # left on the board's filesystem by an earlier --mpy deploy: would shadow
    # the frozen modules; the board's own data stays
    for f in ("gbt/session.mpy", "gbt/session.py", "stm32/board.mpy", "charger.mpy",
              "config.py", "state/lockout.json", "config.json", "notes.txt"):
        (fakes.fs / f).parent.mkdir(parents=True, exist_ok=True)
        (fakes.fs / f).write_text("old")
    t0 = time.monotonic()
    rc, lines = run_deploy("--port", str(port), "--board", "PYBV11", "--config", str(cfg),
                           "--image", str(fakes.image), "--build-dir", str(tmp_path / "build"))
    assert rc == 0, lines
    assert lines[-1] == "# done"
    out = tmp_path / "build" / "deploy" / "PYBV11"
    mp = ["mpremote", "connect", str(port)]
    assert fakes.calls() == [
        mp + ["exec", deploy.PROBE],
        mp + ["bootloader"],
        ["dfu-util", "-w", "-d", "0483:df11", "-a", "0", "-s", ":leave", "-D",
         str(fakes.image)],
        mp + ["run", str(out / "clean.py")],
        mp + ["fs", "cp", str(cfg), ":config.json"],
        mp + ["fs", "cp", str(out / "main.py"), ":main.py"],
        mp + ["reset"],
    ]
    assert time.monotonic() - t0 >= 1.0                 # the port was away for 1 s
    assert port.exists()
    assert json.loads((fakes.fs / "config.json").read_text()) == json.loads(cfg.read_text())
    assert (fakes.fs / "main.py").read_text() == deploy.main_py_text("stm32")
    for gone in ("gbt", "stm32", "charger.mpy", "config.py"):
        assert not (fakes.fs / gone).exists(), gone
    assert (fakes.fs / "state" / "lockout.json").read_text() == "old"
    assert (fakes.fs / "notes.txt").read_text() == "old"


def test_image_builds_a_missing_image_before_flashing(tmp_path, fakes, monkeypatch):
    img = tmp_path / "fw" / "NUCLEO_H743ZI" / "firmware.dfu"
    monkeypatch.setattr(deploy, "image_path", lambda board: img)
    monkeypatch.setattr(deploy, "build_command", lambda board: [
        sys.executable, "-c", "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "p.parent.mkdir(parents=True); p.write_bytes(b'DfuSe built')", str(img)])
    port = fakes.board_port()
    rc, lines = deploy_inproc(port=str(port), board="NUCLEO_H743ZI",
                              build_root=tmp_path / "build", reset=False)
    assert rc == 0, lines
    assert img.read_bytes() == b"DfuSe built"
    # the fake dfu-util refuses a missing file: the build ran before the flash
    assert [c[0] for c in fakes.calls()] == ["mpremote", "mpremote", "dfu-util", "mpremote",
                                             "mpremote"]
    assert fakes.calls()[2][-1] == str(img)


def test_image_port_not_back_in_time(tmp_path, fakes):
    port = fakes.board_port()
    rc, lines = run_deploy("--port", str(port), "--board", "PYBV11", "--image",
                           str(fakes.image), "--wait", "0.2",
                           "--build-dir", str(tmp_path / "build"))
    assert rc == 1
    assert lines[-1].startswith("deploy: %s did not come back within 0 s after flashing" % port)
    assert [c[0] for c in fakes.calls()] == ["mpremote", "mpremote", "dfu-util"]


def test_image_refused_while_a_session_runs(tmp_path, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_STAGE", "7")
    port = fakes.board_port()
    rc, lines = deploy_inproc(port=str(port), board="PYBV11", image=str(fakes.image),
                              build_root=tmp_path / "build")
    assert rc == 1
    assert lines[-1].startswith("deploy: a charging session is running on the board (stage 7)")
    assert fakes.calls() == [["mpremote", "connect", str(port), "exec", deploy.PROBE]]
    assert port.exists()                                    # never sent to the bootloader


def test_image_in_dfu_and_no_flash(tmp_path, fakes):
    port = fakes.board_port()
    out = tmp_path / "build" / "deploy" / "PYBV11"
    rc, lines = deploy_inproc(port=str(port), board="PYBV11", image=str(fakes.image),
                              in_dfu=True, dry_run=True, build_root=tmp_path / "build")
    assert rc == 0
    assert lines[3:-1] == _image_steps(fakes, port, fakes.image, out, bootloader=False)
    # --no-flash (an ESP32 flashed with ESP-IDF's tools): probe, clean, main.py, reset
    rc, lines = deploy_inproc(port=str(port), board="esp32", flash=False, dry_run=True,
                              build_root=tmp_path / "build", reset=False)
    assert rc == 0, lines
    out = tmp_path / "build" / "deploy" / "esp32"
    mp = [str(fakes.bin / "mpremote"), "connect", str(port)]
    assert lines[1:] == [
        "# 2. --no-flash: the board already runs the image",
        "# 3. configure (dry run: not executed)",
        shlex.join(mp + ["exec", deploy.PROBE]),
        shlex.join(mp + ["run", str(out / "clean.py")]),
        shlex.join(mp + ["fs", "cp", str(out / "main.py"), ":main.py"]),
        "# dry run: nothing copied"]
    assert (out / "main.py").read_text() == "import esp32b.main; esp32b.main.run()\n"
    assert "('esp32b/',(" in (out / "clean.py").read_text()
    assert fakes.calls() == []


def test_esp32_image_explains_the_esp_idf_path(tmp_path, fakes):
    port = fakes.board_port()
    rc, lines = run_deploy("--port", str(port), "--board", "esp32",
                           "--build-dir", str(tmp_path / "build"))
    assert rc == 1
    text = "\n".join(lines)
    assert text.startswith("deploy: ESP32 images need ESP-IDF, which is not available")
    assert "FROZEN_MANIFEST=%s/boards/esp32/manifest.py" % ROOT in text
    assert "esptool.py --chip esp32s3 -p %s -b 460800 write_flash -z 0x0" % port in text
    assert "--board esp32 --no-flash" in text
    assert fakes.calls() == [] and not (tmp_path / "build").exists()


# -- the .mpy path: allowed only where the heap holds it ------------------------

@pytest.mark.parametrize("board, args, heap", [
    ("PYBV11", [], "105,632"), ("stm32", [], "105,632"), ("esp32", [], "111,936")])
def test_mpy_refused_where_the_heap_is_too_small(tmp_path, fakes, board, args, heap):
    port = fakes.board_port()
    rc, lines = run_deploy("--port", str(port), "--board", board, "--mpy", *args,
                           "--config", str(_site(tmp_path)),
                           "--build-dir", str(tmp_path / "build"))
    assert rc == 1
    assert len(lines) == 1, lines
    msg = lines[0]
    name = "PYBV11" if board != "esp32" else "esp32"
    assert msg.startswith("deploy: --mpy refused for %s: installed as .mpy files, importing "
                          "the charger needs a GC heap of at least 253,776 bytes" % name), msg
    assert "194,240 bytes stay allocated after `import charger`" in msg
    assert "heap is %s bytes" % heap in msg
    assert ("Flash the image instead" in msg) == (board != "esp32")
    assert ("--psram" in msg) == (board == "esp32")
    assert fakes.calls() == [] and not (tmp_path / "build").exists()


def test_mpy_gate_figures():
    """The gate: the measured need lies between the boards it separates, and
    the PYBV11 figure is the heap the QEMU target is built with."""
    T = deploy.BOARD_TABLE
    assert deploy.mpy_refusal(T["NUCLEO_H743ZI"], False) is None
    assert deploy.mpy_refusal(T["esp32"], True) is None
    assert deploy.mpy_refusal(T["PYBV11"], False) and deploy.mpy_refusal(T["esp32"], False)
    assert T["PYBV11"].heap < deploy.MPY_HEAP_NEED < T["NUCLEO_H743ZI"].heap
    assert deploy.MPY_HEAP_RETAINED < deploy.MPY_HEAP_NEED
    with pytest.raises(deploy.DeployError, match="no PSRAM option"):
        deploy.mpy_heap(T["PYBV11"], True)
    mk = (BOARDS / "qemu" / "QEMU_M3" / "mpconfigboard.mk").read_text()
    assert re.search(r"^MICROPY_HEAP_SIZE \?= (\d+)$", mk, re.M).group(1) == str(T["PYBV11"].heap)
    for board, key in (("QEMU_M3", "PYBV11"), ("PYBV11", "PYBV11"),
                       ("NUCLEO_H743ZI", "NUCLEO_H743ZI")):
        sizes = ROOT / "build" / "firmware" / board / "sizes.json"
        if sizes.exists():              # QEMU_M3: always under `make test`
            assert json.loads(sizes.read_text())["heap_bytes"] == T[key].heap, board
    with pytest.raises(deploy.DeployError, match="emulated target"):
        deploy.resolve_board("QEMU_M3")
    with pytest.raises(deploy.DeployError, match="unknown board 'pyb2'"):
        deploy.resolve_board("pyb2")


def test_docs_quote_the_code_figures():
    """docs/deploy.md shows the refusal exactly as printed; docs/boards.md and
    the README quote the figures the gate uses."""
    msg = "deploy: " + deploy.mpy_refusal(deploy.BOARD_TABLE["PYBV11"], False)
    assert msg in (ROOT / "docs" / "deploy.md").read_text()
    boards = (ROOT / "docs" / "boards.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for n in (deploy.MPY_HEAP_NEED, deploy.MPY_HEAP_RETAINED,
              deploy.BOARD_TABLE["PYBV11"].heap, deploy.BOARD_TABLE["NUCLEO_H743ZI"].heap,
              deploy.BOARD_TABLE["esp32"].heap):
        assert "{:,}".format(n) in boards, n
    for n in (deploy.MPY_HEAP_NEED, deploy.BOARD_TABLE["PYBV11"].heap,
              deploy.BOARD_TABLE["NUCLEO_H743ZI"].heap):
        assert "{:,}".format(n) in readme, n


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    cfg = tmp / "site.json"
    cfg.write_text(json.dumps({"h8.ma": 25, "hw.wdt_ms": 2000, "charger.id": 7}))
    rc, lines = run_deploy("--port", PORT, "--board", "NUCLEO_H743ZI", "--mpy",
                           "--config", str(cfg), "--dry-run", "--build-dir", str(tmp / "build"))
    return tmp, cfg, rc, lines


def test_mpy_dry_run_prints_exact_commands(dry):
    tmp, cfg, rc, lines = dry
    assert rc == 0, lines
    b = tmp / "build"
    out = b / "stm32"
    mp = [MPREMOTE, "connect", PORT]
    expected_mp = [
        shlex.join(mp + ["exec", 'print("STAGE", app.session.stage if "app" in globals() else -1)']),
        shlex.join(mp + ["run", str(b / "stm32.clean.py")]),
        shlex.join(mp + ["fs", "cp", "-r"] + [str(out / d) for d in
                                              ("diag", "gbt", "pinboard", "rt", "safety", "security",
                                               "stm32")] + [":."]),
        shlex.join(mp + ["fs", "cp"] + [str(out / f) for f in
                                        ("appbuild.mpy", "appcore.mpy", "board.mpy", "bootseq.mpy",
                                         "cfgjson.mpy", "charger.mpy", "config.mpy", "store.mpy")]
                   + [":."]),
        shlex.join(mp + ["fs", "cp", str(cfg), ":config.json"]),
        shlex.join(mp + ["fs", "cp", "boards/stm32/main.py", ":main.py"]),
        shlex.join(mp + ["reset"]),
    ]
    mp_lines = [l for l in lines if l.startswith(MPREMOTE)]
    assert mp_lines == expected_mp
    # one mpy-cross line per module, exactly as run
    # (-march: the firmware has native code, compiled for the family's CPU)
    expected_cross = [shlex.join([MPY_CROSS, "-march=armv7m", "-o", str(out / (m + ".mpy")),
                                  "-s", m + ".py", "firmware/%s.py" % m]) for m in _fw_modules()]
    expected_cross += [shlex.join([MPY_CROSS, "-march=armv7m",
                                   "-o", str(out / pkg / (f + ".mpy")), "-s",
                                   "%s/%s.py" % (pkg, f), "boards/%s/%s.py" % (pkg, f)])
                       for pkg, files in (("pinboard", ("board", "fastprot")),
                                          ("stm32", ("board", "pins", "can", "main")))
                       for f in files]
    assert [l for l in lines if l.startswith(MPY_CROSS)] == expected_cross
    # the heap gate passed (H743: 468,968 B), then the configuration was
    # checked with the firmware's validation, before anything was compiled
    assert lines[0] == "# --mpy on NUCLEO_H743ZI: heap 468,968 bytes >= %s needed" % (
        "{:,}".format(deploy.MPY_HEAP_NEED))
    check = shlex.join([sys.executable, "-m", "host_tools.config_check", str(cfg),
                        "--board", "stm32"])
    assert lines[2] == check
    assert lines.index(check) < lines.index(expected_cross[0])
    assert lines[-1] == "# dry run: nothing copied"


def test_build_has_an_mpy_for_every_module(dry):
    tmp = dry[0]
    out = tmp / "build" / "stm32"
    built = sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*"))
    built = [m for m in built if (out / (m + ".mpy")).is_file()]
    want = sorted(_fw_modules() + ["stm32/board", "stm32/pins", "stm32/can", "stm32/main",
                                   "pinboard/board", "pinboard/fastprot"])
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
                              reset=False, mpy=True, psram=True)
    assert rc == 0, lines
    out = tmp_path / "esp32"
    assert sorted(p.name for p in (out / "esp32b").iterdir()) == [
        "board.mpy", "main.mpy", "mcp2515.mpy", "mcp2515spi.mpy", "pins.mpy"]
    assert sorted(p.name for p in (out / "pinboard").iterdir()) == ["board.mpy", "fastprot.mpy"]
    assert not (out / "stm32").exists()             # the ESP32 needs nothing of the STM32 board
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
@pytest.mark.parametrize("how", ["image", "mpy"])
def test_bad_config_refused_before_anything(tmp_path, fakes, bad, message, how):
    """Not a dry run, with the fake tools on PATH: nothing runs, nothing is built."""
    cfg = tmp_path / "bad.json"
    cfg.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    port = fakes.board_port()
    if how == "image":
        rc, lines = deploy_inproc(port=str(port), board="PYBV11", config=str(cfg),
                                  build_root=tmp_path / "build", image=str(fakes.image))
        verb = "flashed"
    else:
        rc, lines = deploy_inproc(port=str(port), board="NUCLEO_H743ZI", mpy=True,
                                  config=str(cfg), build_root=tmp_path / "build")
        verb = "copied"
    assert rc == 1
    assert "deploy: %s is invalid, nothing was %s:" % (cfg, verb) in lines
    assert any(message in l for l in lines), lines
    assert not any(l.startswith((MPY_CROSS, MPREMOTE, str(fakes.bin))) for l in lines)
    assert not (tmp_path / "build").exists()
    assert fakes.calls() == []                      # no mpremote, no dfu-util
    assert port.exists()


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
    assert eval("[%s]" % m.group(1)) == deploy.BOARD_PACKAGES["stm32"][1][2]
    m = re.search(r'package\("pinboard", files=\[([^\]]*)\]', stm)
    assert eval("[%s]" % m.group(1)) == deploy.BOARD_PACKAGES["stm32"][0][2]
    esp = (BOARDS / "esp32" / "manifest.py").read_text()
    m = re.search(r'package\("pinboard", files=\[([^\]]*)\]', esp)
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
        # --march host: the "board" is this machine's unix port (the tree
        # has native code, which loads only on the CPU it was built for)
        rc, lines = run_deploy("--port", os.ttyname(slave), "--board", "NUCLEO_H743ZI",
                               "--mpy", "--config", str(cfg),
                               "--build-dir", str(tmp_path / "build"), "--no-reset",
                               "--march", "host")
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
    assert (board_fs / "pinboard" / "fastprot.mpy").is_file()
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
