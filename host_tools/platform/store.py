"""The platform's store: Parquet files partitioned by day and charger.

Layout under the store's root (hive-style directories, readable by pyarrow,
DuckDB, Spark and Trino as they are):

    records/day=YYYY-MM-DD/charger=<id>/part-<stamp>-<k>.parquet   ingest output
    records/day=YYYY-MM-DD/charger=<id>/data.parquet               after compaction
    sessions/day=YYYY-MM-DD/sessions.parquet      one row per charging session (features)
    alarms/day=YYYY-MM-DD/alarms-<stamp>.parquet  alarms with their evidence
    reference/kl.json                             the KL reference distributions (A-2)
    ingest.sqlite                                 per charger: which record numbers n are stored

A record's day is the date in its own time stamp (the charger's civil time;
a record without a date goes to the platform's UTC day of arrival).  Rows
are one per Table-1 record (``wire.SCHEMA``: header fields, ``n``, ``boot``
and every payload field, null where the record type does not have it or the
value was not available).

Exactly once: ``Ranges`` keeps, per charger, the stored intervals of ``n``;
a batch's records already stored are dropped before they are buffered, and
the intervals are committed only after the Parquet file is written.
Compaction also drops duplicate ``n`` (a crash between the two writes).

Retention: ``retain()`` deletes day partitions older than the retention
(default 8 years, seed 000 4.2.2 b; shorter is refused).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import wire as W

MIN_RETENTION_DAYS = 2922          # 8 years (2 leap days)
COMPRESSION = "zstd"
_part = itertools.count()


class Ranges:
    """Stored record numbers per charger, as merged half-open intervals."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS ranges (charger_id INTEGER, lo INTEGER, hi INTEGER)")
        self.iv: dict[int, list[list[int]]] = {}
        for cid, lo, hi in self.db.execute("SELECT charger_id, lo, hi FROM ranges ORDER BY charger_id, lo"):
            self.iv.setdefault(cid, []).append([lo, hi])

    def new_mask(self, cid: int, n0: int, count: int) -> np.ndarray:
        """True for each of n0 .. n0+count-1 that is not stored yet."""
        mask = np.ones(count, bool)
        for lo, hi in self.iv.get(cid, ()):
            a, b = max(lo, n0), min(hi, n0 + count)
            if a < b:
                mask[a - n0:b - n0] = False
        return mask

    def add(self, cid: int, lo: int, hi: int) -> None:
        iv = self.iv.setdefault(cid, [])
        iv.append([lo, hi])
        iv.sort()
        out = [iv[0]]
        for a, b in iv[1:]:
            if a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        self.iv[cid] = out

    def missing(self, cid: int) -> list[tuple[int, int]]:
        """Gaps between stored intervals (records never received)."""
        iv = self.iv.get(cid, [])
        return [(a[1], b[0]) for a, b in zip(iv, iv[1:])]

    def count(self, cid: int) -> int:
        return sum(b - a for a, b in self.iv.get(cid, ()))

    def commit(self, cids) -> None:
        with self.db:
            for cid in cids:
                self.db.execute("DELETE FROM ranges WHERE charger_id = ?", (cid,))
                self.db.executemany("INSERT INTO ranges VALUES (?,?,?)",
                                    [(cid, a, b) for a, b in self.iv.get(cid, ())])

    def close(self):
        self.db.close()


def _today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")


class Store:
    def __init__(self, root, flush_rows: int = 200_000):
        self.root = Path(root).resolve()      # DuckDB globs need an absolute path
        (self.root / "records").mkdir(parents=True, exist_ok=True)
        self.ranges = Ranges(self.root / "ingest.sqlite")
        self.flush_rows = flush_rows
        self.lock = threading.RLock()
        self._buf: list[pa.Table] = []
        self._buf_rows = 0
        self._raw: list = []          # telemetry batches not decoded yet
        self._raw_rows = 0
        self._pending: list[tuple[int, int, int]] = []   # (cid, lo, hi) not committed yet
        self._pending_mask: dict[int, list] = {}
        self.stats = {"batches": 0, "records": 0, "duplicates": 0, "invalid": 0,
                      "files": 0, "bytes": 0}

    # ---- ingest -------------------------------------------------------------
    def add_batch(self, payload: bytes) -> tuple[int, int]:
        """Buffer a telemetry batch (``wire`` format).  -> (new records, duplicates)."""
        cid, n0, boot, count, flags, recs = W.unpack_batch(payload)
        with self.lock:
            self.stats["batches"] += 1
            mask = self.ranges.new_mask(cid, n0, count)
            for lo, hi in self._pending_mask.get(cid, ()):
                a, b = max(lo, n0), min(hi, n0 + count)
                if a < b:
                    mask[a - n0:b - n0] = False
            dup = int(count - mask.sum())
            self.stats["duplicates"] += dup
            if not mask.any():
                return 0, dup
            offs, types = W.record_offsets(recs, count)
            if len(offs) != count:
                self.stats["invalid"] += count - len(offs)
                mask = mask[:len(offs)]
            keep = np.nonzero(mask)[0]
            # decoded at flush, all batches at once (the vectorised decoder's
            # cost is mostly per call)
            self._raw.append((bytes(recs), offs[keep], types[keep], n0 + keep, cid, boot))
            self._raw_rows += len(keep)
            self._pending.append((cid, n0, n0 + count))
            pm = self._pending_mask.setdefault(cid, [])
            if pm and pm[-1][1] == n0:          # the usual case: the next batch in order
                pm[-1] = (pm[-1][0], n0 + count)
            else:
                pm.append((n0, n0 + count))
            if self._buf_rows + self._raw_rows >= self.flush_rows:
                self.flush()
            return len(keep), dup

    def _decode_raw(self) -> None:
        if not self._raw:
            return
        base = np.cumsum([0] + [len(r[0]) for r in self._raw[:-1]])
        buf = b"".join(r[0] for r in self._raw)
        offs = np.concatenate([r[1] + b0 for r, b0 in zip(self._raw, base)])
        types = np.concatenate([r[2] for r in self._raw])
        ns = np.concatenate([r[3] for r in self._raw])
        cids = np.concatenate([np.full(len(r[1]), r[4], np.int64) for r in self._raw])
        boots = np.concatenate([np.full(len(r[1]), r[5], np.int64) for r in self._raw])
        self._raw, self._raw_rows = [], 0
        tab, bad = W.decode_columns(buf, ns, charger_ids=cids, boots=boots, offs=offs, types=types)
        self.stats["invalid"] += bad
        self.stats["records"] += tab.num_rows
        self._buf.append(tab)
        self._buf_rows += tab.num_rows

    def add_table(self, tab: pa.Table, ranges=()) -> None:
        """Buffer already-decoded rows (``wire.SCHEMA``); ``ranges``: (cid, lo, hi) they cover.
        Other columns (a query's ``day``/``charger``) are left out, types cast
        to the schema (DuckDB hands timestamps back in microseconds)."""
        tab = tab.select(list(W.SCHEMA.names)).cast(W.SCHEMA)
        with self.lock:
            self._buf.append(tab)
            self._buf_rows += tab.num_rows
            self.stats["records"] += tab.num_rows
            for r in ranges:
                self._pending.append(tuple(r))
                self._pending_mask.setdefault(r[0], []).append((r[1], r[2]))
            if self._buf_rows >= self.flush_rows:
                self.flush()

    def flush(self) -> int:
        """Write the buffered rows (one file per day and charger), then commit
        the record numbers.  Returns rows written."""
        with self.lock:
            self._decode_raw()
            if not self._buf:
                return 0
            tab = pa.concat_tables(self._buf)
            if tab.num_rows == 0:            # every record of the batches was invalid
                self._buf, self._buf_rows, self._pending, self._pending_mask = [], 0, [], {}
                return 0
            pending = self._pending
            self._buf, self._buf_rows, self._pending, self._pending_mask = [], 0, [], {}
            self._write_partitions(tab, "records")
            for cid, lo, hi in pending:
                self.ranges.add(cid, lo, hi)
            self.ranges.commit({p[0] for p in pending})
            return tab.num_rows

    def _write_partitions(self, tab: pa.Table, dataset: str) -> None:
        ts = tab.column("ts")
        day_ms = pc.fill_null(ts.cast(pa.int64()), int(time.time() * 1000))
        days = (np.asarray(day_ms) // 86_400_000).astype("datetime64[D]")
        cids = np.asarray(tab.column("charger_id"))
        key = days.astype(np.int64) * (1 << 33) + cids
        order = np.argsort(key, kind="stable")
        skey = key[order]
        cuts = np.nonzero(np.diff(skey))[0] + 1
        stamp = "%d-%d-%d" % (time.time_ns() // 1000, os.getpid(), next(_part))
        for k, idx in enumerate(np.split(order, cuts)):
            day = str(days[idx[0]])
            cid = int(cids[idx[0]])
            d = self.root / dataset / ("day=%s" % day) / ("charger=%d" % cid)
            d.mkdir(parents=True, exist_ok=True)
            path = d / ("part-%s-%d.parquet" % (stamp, k))
            tmp = path.with_suffix(".tmp")
            pq.write_table(tab.take(idx), tmp, compression=COMPRESSION)
            os.replace(tmp, path)
            self.stats["files"] += 1
            self.stats["bytes"] += path.stat().st_size

    # ---- sessions and alarms --------------------------------------------------
    def write_sessions(self, feats) -> None:
        """Session features (``analytics.Features``) -> sessions/day=.../sessions.parquet
        (one file per day, replaced: the features of a day are recomputed whole)."""
        tab = feats.table()
        if not tab.num_rows:
            return
        day = (np.asarray(tab.column("start_ms")) // 86_400_000).astype("datetime64[D]").astype(str)
        for d in np.unique(day):
            dd = self.root / "sessions" / ("day=%s" % d)
            dd.mkdir(parents=True, exist_ok=True)
            tmp = dd / "sessions.parquet.tmp"
            pq.write_table(tab.filter(pa.array(day == d)), tmp, compression=COMPRESSION)
            os.replace(tmp, dd / "sessions.parquet")

    def write_alarms(self, alarms: list[dict]) -> None:
        """Alarms (``analytics.alarms``) -> alarms/day=.../alarms-<stamp>.parquet; the
        evidence that is not a column stays as JSON text."""
        if not alarms:
            return
        cols = ("charger_id", "boot", "session", "vin", "start_ms", "rule", "metric", "scope",
                "value", "threshold", "in_progress", "text")
        by_day: dict = {}
        for a in alarms:
            d = dt.datetime.fromtimestamp(a["start_ms"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
            by_day.setdefault(d, []).append(a)
        stamp = "%d-%d" % (time.time_ns() // 1000, next(_part))
        for d, al in by_day.items():
            dd = self.root / "alarms" / ("day=%s" % d)
            dd.mkdir(parents=True, exist_ok=True)
            t = pa.table({c: [a.get(c) for a in al] for c in cols} | {
                "evidence": [json.dumps(a, ensure_ascii=False) for a in al]})
            pq.write_table(t, dd / ("alarms-%s.parquet" % stamp), compression=COMPRESSION)

    def records(self, where: str = "", columns=None) -> pa.Table:
        """Records as Arrow through DuckDB (``where``: an SQL condition, e.g.
        ``day >= '2026-01-01'`` prunes partitions)."""
        con = self.duck()
        cols = ", ".join(columns) if columns else "*"
        try:
            return con.sql("SELECT %s FROM records %s" % (cols, ("WHERE " + where) if where else "")
                           ).to_arrow_table()
        except Exception as e:          # no records yet
            if "records" in str(e) and "not exist" in str(e):
                return W.SCHEMA.empty_table()
            raise

    # ---- queries ------------------------------------------------------------
    def glob(self, dataset: str = "records") -> str:
        return str(self.root / dataset / "day=*" / "charger=*" / "*.parquet")

    def duck(self, con=None):
        """A DuckDB connection with views ``records``, ``sessions``, ``alarms``
        over the Parquet files (only those that exist)."""
        import duckdb
        con = con or duckdb.connect()
        views = {"records": self.glob("records"),
                 "sessions": str(self.root / "sessions" / "day=*" / "*.parquet"),
                 "alarms": str(self.root / "alarms" / "day=*" / "*.parquet")}
        for name, g in views.items():
            if list(Path("/").glob(g.lstrip("/"))):
                con.execute("CREATE OR REPLACE VIEW %s AS SELECT * FROM read_parquet('%s', "
                            "hive_partitioning = true, union_by_name = true)" % (name, g))
        return con

    def days(self, dataset: str = "records") -> list[str]:
        d = self.root / dataset
        return sorted(p.name[4:] for p in d.glob("day=*")) if d.exists() else []

    def size_bytes(self, dataset: str = "records") -> int:
        return sum(p.stat().st_size for p in (self.root / dataset).rglob("*.parquet"))

    # ---- compaction and retention ------------------------------------------
    def compact(self, before: str | None = None, all_days: bool = False) -> dict:
        """Merge each (day, charger) partition into one ``data.parquet``
        sorted by ``n``, duplicates dropped.  Only days before ``before``
        (default: today, UTC: today's partitions are still being written)."""
        self.flush()
        before = before or _today()
        out = {"partitions": 0, "files_in": 0, "rows_dropped": 0}
        for dd in sorted((self.root / "records").glob("day=*")):
            if not all_days and dd.name[4:] >= before:
                continue
            for cd in sorted(dd.glob("charger=*")):
                files = sorted(cd.glob("*.parquet"))
                if len(files) <= 1 and (not files or files[0].name == "data.parquet"):
                    continue
                tab = pa.concat_tables([pq.read_table(f, schema=W.SCHEMA) for f in files])
                n = np.asarray(tab.column("n"))
                order = np.argsort(n, kind="stable")
                sn = n[order]
                first = np.ones(len(sn), bool)
                first[1:] = sn[1:] != sn[:-1]
                keep = order[first]
                tmp = cd / "data.parquet.tmp"
                pq.write_table(tab.take(keep), tmp, compression=COMPRESSION,
                               compression_level=9, row_group_size=1 << 20)
                os.replace(tmp, cd / "data.parquet")
                for f in files:
                    if f.name != "data.parquet":
                        f.unlink()
                out["partitions"] += 1
                out["files_in"] += len(files)
                out["rows_dropped"] += len(n) - len(keep)
        return out

    def retain(self, keep_days: int = MIN_RETENTION_DAYS, today: str | None = None,
               allow_short: bool = False) -> list[str]:
        """Delete every dataset's day partitions older than ``keep_days``
        before ``today``.  Less than 8 years is refused (seed 000 4.2.2 b)
        unless ``allow_short``.  Returns the days removed."""
        if keep_days < MIN_RETENTION_DAYS and not allow_short:
            raise ValueError("retention %d days is shorter than 8 years (%d days, seed 000 "
                             "4.2.2 b)" % (keep_days, MIN_RETENTION_DAYS))
        t = dt.date.fromisoformat(today or _today())
        limit = (t - dt.timedelta(days=keep_days)).isoformat()
        gone = []
        for ds in ("records", "sessions", "alarms"):
            for dd in sorted((self.root / ds).glob("day=*")):
                if dd.name[4:] < limit:
                    shutil.rmtree(dd)
                    gone.append(dd.name[4:])
        return sorted(set(gone))

    def close(self):
        self.flush()
        self.ranges.close()
