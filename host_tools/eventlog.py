"""Decode the charger's persistent event log (D-2) on the host.

    mpremote fs cp :state/events.0 :state/events.1 .        # pull from a board
    python -m host_tools.eventlog events.*                   # human-readable
    python -m host_tools.eventlog state/ --json              # a directory, JSON

Files may be given in any order (or a directory holding ``events.N``):
records are ordered by their sequence number, which survives rotation and
reboots.  Torn or corrupt bytes (a power cut during a write) are skipped and
reported on stderr; every complete record around them is still decoded.
Times: ``time_s`` is seconds since the firmware epoch 2020-01-01 00:00 UTC
(record version 2; version-1 records of older firmware are converted, see
``firmware/diag/eventlog.py``), shown as UTC date-time; ``--json`` also
gives ``unix_s``.  A board whose clock was not set shows ``clock-unset``.

The layout, CRC and event names come from the firmware module itself
(``firmware/diag/eventlog.py``), loaded with a stand-in for MicroPython's
``micropython.const``, so host and board can never disagree.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import sys
import types
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

def load_firmware(name: str):
    """Import ``firmware/diag/<name>.py`` on CPython (e.g. "eventlog"), or
    ``firmware/rt/<name>`` given as "rt.calendar".

    Registers ``diag`` and ``rt`` packages pointing at firmware/diag and
    firmware/rt and provides ``micropython.const`` only while importing."""
    for p in ("diag", "rt"):
        if p not in sys.modules:
            pkg = types.ModuleType(p)
            pkg.__path__ = [str(FIRMWARE / p)]
            sys.modules[p] = pkg
    shim = None
    if "micropython" not in sys.modules:
        shim = types.ModuleType("micropython")
        shim.const = lambda x: x
        sys.modules["micropython"] = shim
    try:
        return importlib.import_module(name if "." in name else "diag." + name)
    finally:
        if shim is not None and sys.modules.get("micropython") is shim:
            del sys.modules["micropython"]


FW = load_firmware("eventlog")
CAL = load_firmware("rt.calendar")
FIELDS = ("seq", "boot", "time_s", "code", "name", "a", "b", "text")


def scan(data: bytes) -> tuple[list[tuple], int]:
    """Records in one file's bytes -> (tuples as ``FIELDS``, skipped bytes)."""
    return FW.scan(data)


def expand(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("events.*"), key=lambda q: q.name))
        else:
            out.append(p)
    return out


def decode_files(paths) -> tuple[list[dict], dict[str, tuple[int, int]]]:
    """Every record of every file, oldest first, without duplicates (the
    same file pulled twice); plus ``{path: (records, skipped_bytes)}``."""
    seen = {}
    stats = {}
    for p in expand(paths):
        recs, skipped = scan(p.read_bytes())
        stats[str(p)] = (len(recs), skipped)
        for r in recs:
            seen[r] = None
    recs = sorted(seen, key=lambda r: (r[0], r[1]))
    return [annotate(dict(zip(FIELDS, r))) for r in recs], stats


def fmt_time(t: int) -> str:
    """Firmware seconds (since 2020-01-01 UTC, as ``FW.decode`` returns them
    for every record version) -> "YYYY-MM-DD hh:mm:ss" UTC; negative: the
    board's clock was not set."""
    if t >= 0:
        return _dt.datetime.fromtimestamp(CAL.to_unix(t), _dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S")
    return "clock-unset"


def _stage_names() -> tuple:
    """``gbt.stages.STAGE_NAMES`` of the firmware (the console's names)."""
    import importlib.util
    shim = sys.modules.get("micropython")
    if shim is None:
        sys.modules["micropython"] = types.SimpleNamespace(const=lambda x: x)
    try:
        spec = importlib.util.spec_from_file_location("_fw_stages", FIRMWARE / "gbt" / "stages.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return tuple(mod.STAGE_NAMES)
    finally:
        if shim is None:
            del sys.modules["micropython"]


STAGE_NAMES = _stage_names()


def _stage(n: int) -> str:
    return STAGE_NAMES[n] if 0 <= n < len(STAGE_NAMES) else str(n)


def annotate(rec: dict) -> dict:
    """Add readable extras: time text, operator action names, stage names
    (as the console's ``faults()`` shows them: "charging <- precharge")."""
    rec["time"] = fmt_time(rec["time_s"])
    rec["unix_s"] = CAL.to_unix(rec["time_s"]) if rec["time_s"] >= 0 else None
    if rec["code"] == FW.EV_OPERATOR and 0 <= rec["a"] < len(FW.OP_NAMES):
        rec["action"] = FW.OP_NAMES[rec["a"]]
    if rec["code"] == FW.EV_STAGE:
        rec["stage"] = "%s <- %s" % (_stage(rec["a"]), _stage(rec["b"]))
    return rec


def format_line(r: dict) -> str:
    if "stage" in r:
        return ("%6d  boot %-3d %-19s  %-15s %s %s" % (r["seq"], r["boot"], r["time"], r["name"],
                                                      r["stage"], r["text"])).rstrip()
    extra = " action=%s" % r["action"] if "action" in r else ""
    return "%6d  boot %-3d %-19s  %-15s a=%-11d b=%-11d %s%s" % (
        r["seq"], r["boot"], r["time"], r["name"], r["a"], r["b"], r["text"], extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.eventlog",
                                 description="Decode charger event-log files (events.N).")
    ap.add_argument("files", nargs="+", help="events.N files or directories holding them")
    ap.add_argument("--json", action="store_true", help="print a JSON list")
    a = ap.parse_args(argv)
    paths = expand(a.files)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print("no such file: %s" % ", ".join(missing), file=sys.stderr)
        return 2
    recs, stats = decode_files(paths)
    for path, (n, skipped) in stats.items():
        if skipped:
            print("%s: %d bytes skipped (torn or corrupt record)" % (path, skipped),
                  file=sys.stderr)
    if a.json:
        json.dump(recs, sys.stdout, indent=1)
        print()
    else:
        for r in recs:
            print(format_line(r))
    return 0


if __name__ == "__main__":
    from host_tools import clitools
    clitools.run(main)
