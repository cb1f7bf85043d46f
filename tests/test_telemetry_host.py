"""Telemetry end to end: records made by the firmware on the real micropython
binary, collected into SQLite by the host tool, checked per Table-1 item."""
import binascii
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import BOARDS, ROOT, run_mp
from host_tools import telemetry as HT

# Table 1 (seed 000) record type -> interval in ms
INTERVALS = {"handshake": 250, "params": 500, "demand": 50, "status": 250, "ending": 250}


def _mp_generate(tmp, name="tel.bin"):
    out = tmp / name
    script = tmp / "gen.py"
    script.write_text("import test_telemetry as t\nt.generate(%r)\n" % str(out))
    r = run_mp(script, heapsize="400wK", extra_path=[BOARDS / "unix", BOARDS / "simlink", BOARDS / "fakes"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RECORDS" in r.stdout
    return out


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    return _mp_generate(tmp_path_factory.mktemp("tel"))


@pytest.fixture(scope="module")
def db(stream, tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "out.sqlite"
    r = subprocess.run([sys.executable, "-m", "host_tools.telemetry", "collect", str(stream),
                        "--db", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "records" in r.stdout
    con = sqlite3.connect(path)
    yield path, con
    con.close()


def test_each_record_type_at_its_table1_interval(db):
    _, con = db
    (sid,) = con.execute("SELECT id FROM sessions").fetchone()
    assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1
    for table, iv in INTERVALS.items():
        gaps = HT.intervals(con, table, sid)
        assert len(gaps) >= 3, table
        assert set(gaps) == {iv}, (table, sorted(set(gaps)))
    # charging lasted 20 s: 400 demand records 50 ms apart, 80 status
    assert con.execute("SELECT COUNT(*) FROM demand").fetchone()[0] == 400
    assert con.execute("SELECT COUNT(*) FROM status").fetchone()[0] == 80


def test_every_table1_item_is_present_with_values(db):
    _, con = db
    for name, table, col in HT.TABLE1:
        n = con.execute('SELECT COUNT("%s") FROM %s' % (col, table)).fetchone()[0]
        assert n > 0, "Table-1 item %r never recorded" % name
    row = con.execute("SELECT batt_type, rated_ah, rated_v FROM handshake "
                      "WHERE batt_type IS NOT NULL LIMIT 1").fetchone()
    assert row == (3, 1500, 3500)
    assert con.execute("SELECT COUNT(*) FROM handshake WHERE batt_type IS NULL").fetchone()[0] == 2, \
        "records before BRM store NULL (not available), not -1"
    row = con.execute("SELECT req_v, req_i, req_mode, out_v, out_i FROM demand "
                      "WHERE t_ms = 20000").fetchone()
    assert row == (4000, 1000, 2, 3600 + 15000 // 200, 1000)
    row = con.execute("SELECT end_soc, end_cell_max_v, end_cell_min_v, end_temp_max, "
                      "end_temp_min FROM ending LIMIT 1").fetchone()
    assert row == (40, 381, 368, 34, 24)


def test_records_are_stamped(db):
    _, con = db
    s = con.execute("SELECT charger_id, charger_type_name, region, province, city, district, "
                    "vin, start FROM sessions").fetchone()
    assert s == (12345678, "DC off-board charger, integrated", 440305, "Guangdong",
                 "Shenzhen", "Nanshan", "LSVAB4BR0MN123456", "2025-06-01 08:00:01.000")
    # every record has a date-time consistent with its board time
    for table in INTERVALS:
        for t_ms, dt in con.execute("SELECT t_ms, datetime FROM %s" % table):
            sec = t_ms // 1000
            assert dt == "2025-06-01 08:%02d:%02d.%03d" % (sec // 60, sec % 60, t_ms % 1000)
    ev = [r[0] for r in con.execute("SELECT event FROM events ORDER BY seq")]
    assert ev == ["session", "stage", "stage", "stage", "stage", "stage", "risk-raised"]


def test_summary_cli(db):
    path, _ = db
    r = subprocess.run([sys.executable, "-m", "host_tools.telemetry", "summary", "--db",
                        str(path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "LSVAB4BR0MN123456" in out and "440305 Guangdong, Shenzhen, Nanshan" in out
    assert "demand       400 records  every 50 ms" in out
    assert "params         4 records  every 500 ms" in out
    assert "final SOC 40 %" in out
    assert "never available" not in out
    assert "risk-raised" in out


def test_plot_png(db, tmp_path):
    path, _ = db
    png = tmp_path / "plot.png"
    r = subprocess.run([sys.executable, "-m", "host_tools.telemetry", "plot", "--db", str(path),
                        "--session", "1", "-o", str(png)], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, MPLBACKEND="Agg"))
    assert r.returncode == 0, r.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    r = subprocess.run([sys.executable, "-m", "host_tools.telemetry", "plot", "--db", str(path),
                        "--session", "7", "-o", str(png)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "no session 7" in r.stderr


def test_host_and_firmware_decoders_agree(stream):
    data = stream.read_bytes()
    recs = list(HT.split_stream(data))
    fw, skipped = HT.FWR.scan(data)
    assert skipped == 0 and len(fw) == len(recs) > 500
    for raw, f in zip(recs[::37], fw[::37]):
        h = HT.decode_record(raw)
        for k, v in f.items():
            if k in ("vin", "type_name", "event"):
                assert h[k] == v
            else:
                assert h[k] == (None if v == -1 and f["type"] != HT.FW.T_EVENT else v), k


def test_firmware_crc_is_crc16_ccitt_false():
    assert HT.EV.crc16(b"123456789", 0, 9) == 0x29B1
    blob = bytes(range(256)) * 3
    for n in (0, 1, 31, 255, 700):
        assert HT.EV.crc16(blob, 0, n) == binascii.crc_hqx(blob[:n], 0xFFFF)


def test_collect_sil_pairs_garbage_and_reboot(stream):
    recs = list(HT.split_stream(stream.read_bytes()))
    # SIL: (t_ms, bytes) pairs; a garbage chunk and a torn record in between
    items = [(i, r) for i, r in enumerate(recs[:200])]
    items.insert(50, (0, b"\x00\xa5\x01noise"))
    items.insert(120, (0, recs[120][:30]))
    # the charger reboots: the same records again (sequence restarts)
    items += [(i, r) for i, r in enumerate(recs[:200])]
    con = HT.collect(items)
    assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 2
    n = sum(con.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0] for t in HT.TABLES.values())
    assert n == 400
    col = HT.Collector()
    assert col.add(recs[5][:-1]) is None and col.stats["invalid"] == 1
    with pytest.raises(ValueError):
        HT.decode_record(b"\xa5" + recs[5][1:-1] + b"\x00")


def test_decode_cli_json_lines(stream):
    r = subprocess.run([sys.executable, "-m", "host_tools.telemetry", "decode", str(stream)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["type_name"] == "event" and lines[0]["event"] == "session"
    assert {x["type_name"] for x in lines} == {"event", "handshake", "params", "demand",
                                               "status", "end"}


def test_region_names():
    assert HT.region_names(440305) == ("Guangdong", "Shenzhen", "Nanshan")
    assert HT.region_names(320102) == ("Jiangsu", None, None)
    assert HT.region_names(320102, {"320102": ["Jiangsu", "Nanjing", "Xuanwu"]}) == (
        "Jiangsu", "Nanjing", "Xuanwu")
