"""Event log end to end: files written by the firmware on the real micropython
binary (rotation, a torn tail, a reboot), decoded by the host tool."""
import json
import random
import subprocess
import sys

import pytest

from conftest import BOARDS, ROOT, run_mp
from host_tools import eventlog as HE


def _mp_generate(d, reboot=False):
    script = d.parent / ("gen_%s.py" % d.name)
    script.write_text("import test_eventlog as t\nt.generate(%r, %r)\n" % (str(d), reboot))
    r = run_mp(script, heapsize="400wK", extra_path=[BOARDS / "unix", BOARDS / "simlink", BOARDS / "fakes"])
    assert r.returncode == 0, r.stdout + r.stderr
    return d


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ev")
    return _mp_generate(base / "plain"), _mp_generate(base / "reboot", reboot=True)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "host_tools.eventlog"] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=ROOT)


def test_rotation_order_and_torn_tail(logs):
    d, _ = logs
    files = sorted(d.glob("events.*"))
    assert [f.name for f in files] == ["events.0", "events.1", "events.2"]
    assert [f.stat().st_size for f in files] == [4 * 32 + 20, 8 * 32, 8 * 32]
    shuffled = files[:]
    random.Random(1).shuffle(shuffled)
    r = _cli("--json", *shuffled)
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    assert [x["seq"] for x in recs] == list(range(20)), "seq order, whatever the file order"
    assert "events.0: 20 bytes skipped (torn or corrupt record)" in r.stderr
    first = recs[0]
    assert (first["name"], first["text"], first["a"], first["time_s"], first["boot"]) == \
        ("boot", "unix", 1, 1000, 0)
    assert [x["name"] for x in recs[1:5]] == ["stage", "risk-raised", "stage", "risk-raised"]
    assert recs[19]["text"] == "ev19" and recs[19]["time"] == "2020-01-01 00:16:59"
    assert recs[19]["unix_s"] == 1577836800 + 1019


def test_reboot_after_torn_write(logs):
    _, d = logs
    recs, stats = HE.decode_files([d])              # a directory works too
    # the torn file rotated away at boot; the oldest file (seq 0..7) dropped
    assert [r["seq"] for r in recs] == list(range(8, 22))
    assert [(r["boot"], r["name"]) for r in recs[-2:]] == [(1, "boot"), (1, "operator")]
    assert recs[-1]["action"] == "reset" and recs[-1]["text"] == "console"
    skipped = {p.rsplit("/", 1)[-1]: s for p, (n, s) in stats.items()}
    assert skipped == {"events.0": 0, "events.1": 20, "events.2": 0}


def test_text_output_and_duplicates(logs):
    d, _ = logs
    r = _cli(d / "events.1", d / "events.1", d / "events.2")      # same file twice
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 16, "duplicates removed"
    # the generator logs times 1000.. (firmware seconds: 2020-01-01 00:16:40)
    assert lines[0].split()[:5] == ["0", "boot", "0", "2020-01-01", "00:16:40"]
    assert "stage" in lines[1] and lines[1].endswith("ev1")
    assert "risk-raised" in lines[2] and lines[2].endswith("ev2")


def _rec(fw, version, seq, t, fmt=None):
    import struct
    buf = bytearray(32)
    struct.pack_into(fmt or fw.FMT, buf, 0, fw.MAGIC, version, fw.EV_TRIP, seq, t, 3, 4, b"ovp", 2)
    c = fw.crc16(buf, 0, 30)
    buf[30], buf[31] = c & 0xFF, c >> 8
    return bytes(buf)


def test_epoch_times_and_errors(tmp_path):
    fw = HE.FW
    assert fw.VERSION == 2
    data = (_rec(fw, 1, 7, 1748764800, "<BBHIIii8sH")   # older firmware: Unix seconds
            + _rec(fw, 1, 8, 1000, "<BBHIIii8sH")       # older firmware, no RTC
            + _rec(fw, 2, 9, 170928000 + 60)            # firmware seconds since 2020
            + _rec(fw, 2, 10, -631152000 + 7))          # clock not set
    (tmp_path / "events.0").write_bytes(data + b"\xff" * 5)
    r = _cli("--json", tmp_path)
    recs = json.loads(r.stdout)
    assert recs[0]["time"] == "2025-06-01 08:00:00" and recs[0]["name"] == "trip"
    assert (recs[0]["time_s"], recs[0]["unix_s"]) == (170928000, 1748764800)
    assert (recs[1]["time"], recs[1]["time_s"], recs[1]["unix_s"]) == ("clock-unset", -1, None)
    assert recs[2]["time"] == "2025-06-01 08:01:00"
    assert recs[3]["time"] == "clock-unset" and recs[3]["time_s"] == -631152000 + 7
    assert "5 bytes skipped" in r.stderr
    assert _cli(tmp_path / "nope").returncode == 2
