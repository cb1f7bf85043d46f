"""Issue 10 item 11: one configuration file, one verdict -- on the host
(``host_tools.config_check``, what ``make config-check`` runs) and on the
board (the firmware booting on the SIL with that file).  Bad files refuse
to charge with the reason on the console and in the event log; none of
them crashes the boot."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from host_tools import config_check
from host_tools.eventlog import decode_files
from safety_sil_support import Bench

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE = 16384           # firmware/config.py MAX_FILE

# (id, file bytes, expected errors without the "<path>: " prefix of file errors)
FILES = [
    ("trailing-comma", b'{"h8.ma": 25,}', ["not valid JSON (line 1: trailing comma before })"]),
    ("leading-zero", b'{\n  "session.bhm_ms": 07000\n}',
     ["not valid JSON (line 2: number with a leading zero)"]),
    ("float-as-bool", b'{"session.auto_start": 1.0}',
     ["session.auto_start must be true/false, got 1.0"]),
    ("duplicate-key", b'{"h8.ma": 25,\n "h8.ma": 1000}',
     ["not valid JSON (line 2: duplicate key 'h8.ma')"]),
    ("deep-nesting", b'{"charger.id": ' + b"[" * 8000 + b"]" * 8000 + b"}",
     ["not valid JSON (line 1: 'charger.id': an array/object is not a setting value "
      "(the file is one flat object))"]),
    ("large-file", b'{"charger.id": 1, "x": "' + b"A" * 200000 + b'"}',
     ["larger than %d bytes" % MAX_FILE]),
    ("region-2-chars", b'{"charger.region": "44"}',
     ["charger.region must be exactly 3 printable ASCII characters (CRM bytes 6-8), got '44'"]),
    ("region-utf8", '{"charger.region": "\u65e5\u672c"}'.encode(),
     ["not valid JSON (line 1: non-ASCII byte 0xe6 (settings are ASCII))"]),
    ("valid", b'{"charger.id": 17, "charger.region": "ABC", "session.auto_start": true}', []),
]


def _expected(path: Path, errors):
    file_level = ("not valid JSON", "larger than")
    return ["%s: %s" % (path, e) if e.startswith(file_level) else e for e in errors]


@pytest.mark.parametrize("name,data,errors", FILES, ids=[f[0] for f in FILES])
def test_issue10_item11_same_verdict_host_and_board(tmp_path, name, data, errors):
    path = (tmp_path / ("%s.json" % name)).resolve()
    path.write_bytes(data)
    want = _expected(path, errors)
    # host: the check the deploy and `make config-check` run
    ok, host_errors, _ = config_check.check(path, "unix")
    assert (ok, host_errors) == (not want, want)
    r = subprocess.run([sys.executable, "-m", "host_tools.config_check", str(path), "--board", "unix"],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == (1 if want else 0), r.stdout + r.stderr
    if want:
        assert r.stdout.splitlines()[1:] == ["  " + e for e in want]
    # board: the firmware boots with the same file (no crash), says the same
    state = tmp_path / "state"
    b = Bench(state, config=path, console=True)
    try:
        b.run(3000)
        texts = [s for _, s in b.sim.texts]
        assert [s for s in texts if s.startswith("boot ")] == \
            ["boot unix-sil config=%s" % ("BAD" if want else "ok")], texts[:3]
        assert [s[len("config "):] for s in texts if s.startswith("config ")] == want
        if want:
            # refused: nothing energised, no session, the reason in the event log
            assert not [c for c in b.sim.output_log if c.name in ("pwr_en", "k12", "k34")
                        and c.value == 1]
            assert b.stage_time("handshake") is None
            out, _ = b.console.exec("why()")     # wrapped at 80 columns
            assert "".join(("HALTED (no session will start): bad configuration: " + want[0]).split()) \
                in "".join(out.split()), out
            recs = decode_files([state])[0]
            assert [(r["name"], r["a"]) for r in recs if r["name"] == "boot"] == [("boot", 0)]
            assert len([r for r in recs if r["name"] == "config-error"]) == len(want)
        else:
            assert b.run_until(lambda: b.stage_time("charging") is not None, 20000)
    finally:
        b.close()


def _record(seq, latched):
    payload = struct.pack("<BBBB", 1, latched, 0, 0) + struct.pack("<B17sI", 0, b"", 0)
    n = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<IHH", seq, n, 0xFFFF)))
    return struct.pack("<4sIHHI", b"SRC1", seq, n, 0xFFFF, crc) + payload


def test_issue10_item11_store_path_is_honoured(tmp_path):
    """store.path names the safety record in the state directory: a contactor
    latch saved under that name refuses the session (it was ignored: the
    firmware read state/safety.rec and charged)."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "latches.rec").write_bytes(_record(3, 0x02))
    b = Bench(state, config={"store.path": "latches.rec"})
    try:
        assert b.run_until(lambda: b.texts("refused"), 10000), b.sim.texts[-10:]
        b.run(1000)
        assert b.texts("refused")[0][1] == \
            "refused contactor fault (H-7): inspect, clear_contactor_fault()"
        assert not [c for c in b.sim.output_log if c.name in ("pwr_en", "k12") and c.value == 1]
        assert not (state / "safety.rec").exists()
    finally:
        b.close()
