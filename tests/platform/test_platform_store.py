"""The Parquet store (issue 14, part 2): partitions by day and charger,
DuckDB queries, pyarrow's dataset API reads it partition-pruned, compaction
drops duplicates, retention keeps at least 8 years."""
import datetime as dt
import os

import numpy as np
import pyarrow.dataset as ds
import pytest

from host_tools.platform import store as S
from host_tools.platform import wire as W
from host_tools.platform.fleet import Fleet, FleetSpec


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    st = S.Store(root, flush_rows=50_000)
    fl = Fleet(FleetSpec(chargers=3, days=3, sessions_per_day=2, seed=2, min_minutes=8))
    total = 0
    for d in range(3):
        s = fl.sessions_of_day(d)
        st.add_table(fl.table(s))
    st.flush()
    total = sum(int(n) for n in fl.next_n)
    yield st, fl, total
    st.close()


def test_layout_is_hive_partitioned_by_day_and_charger(filled):
    st, fl, total = filled
    days = st.days()
    assert days == ["2026-01-01", "2026-01-02", "2026-01-03"]
    parts = sorted(p.relative_to(st.root / "records").parts[:2]
                   for p in (st.root / "records").rglob("*.parquet"))
    assert {p[1] for p in parts} == {"charger=%d" % c for c in fl.charger_ids}
    con = st.duck()
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == total
    per = con.execute("SELECT day, charger, count(*) FROM records GROUP BY ALL ORDER BY ALL").fetchall()
    assert len(per) == len(parts) and str(per[0][0]) == "2026-01-01"   # Poisson: a charger may have a free day
    assert sum(r[2] for r in per) == total


def test_pyarrow_dataset_reads_partition_pruned(filled):
    """The layout a Spark/Trino reader sees: pyarrow's dataset API with hive
    partitioning reads only the files of the requested day and charger."""
    st, fl, _ = filled
    cid = int(fl.charger_ids[1])
    d = ds.dataset(st.root / "records", format="parquet", partitioning="hive")
    flt = (ds.field("day") == "2026-01-02") & (ds.field("charger") == cid)
    frags = list(d.get_fragments(filter=flt))
    all_frags = list(d.get_fragments())
    assert 0 < len(frags) < len(all_frags)
    assert all("day=2026-01-02" in f.path and "charger=%d" % cid in f.path for f in frags)
    t = d.to_table(filter=flt, columns=["charger_id", "ts", "n"])
    assert t.num_rows > 0
    assert set(np.asarray(t.column("charger_id"))) == {cid}
    ts = np.asarray(t.column("ts").cast("int64"))
    assert (ts // 86_400_000 == (dt.date(2026, 1, 2) - dt.date(1970, 1, 1)).days).all()


def test_compaction_merges_and_drops_duplicates(tmp_path):
    st = S.Store(tmp_path)
    fl = Fleet(FleetSpec(chargers=1, days=1, sessions_per_day=2, seed=4, min_minutes=8))
    cid, (n0, recs) = list(fl.streams(fl.sessions_of_day(0)).items())[0]
    for k in range(0, len(recs), 1000):
        st.add_batch(W.pack_batch(cid, k, 0, recs[k:k + 1000]))
        st.flush()                                      # many small files
    # a crash between the Parquet write and the commit of the numbers: the
    # same records written twice
    st.add_table(st.records("n < 500"))
    st.flush()
    files = list((st.root / "records").rglob("*.parquet"))
    assert len(files) > 3
    out = st.compact(all_days=True)
    assert out["rows_dropped"] == 500
    assert [p.name for p in (st.root / "records").rglob("*.parquet")] == ["data.parquet"]
    con = st.duck()
    assert con.execute("SELECT count(*), count(DISTINCT n) FROM records").fetchone() == (len(recs), len(recs))
    st.close()


def test_retention_is_at_least_8_years(tmp_path):
    st = S.Store(tmp_path)
    for day in ("2017-12-01", "2018-01-01", "2018-01-02", "2026-01-01"):
        p = st.root / "records" / ("day=" + day) / "charger=1"
        p.mkdir(parents=True)
        (p / "data.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="8 years"):
        st.retain(365, today="2026-01-02")
    gone = st.retain(today="2026-01-02")
    # 8 years before 2026-01-02 is 2018-01-02 (2922 days): that day is kept
    assert gone == ["2017-12-01", "2018-01-01"]
    assert st.days() == ["2018-01-02", "2026-01-01"]
    st.close()


def test_relative_store_path_is_queryable(filled, tmp_path, monkeypatch):
    """A store opened by a relative path (``out/platform/store``) still has
    its DuckDB views (the globs are absolute)."""
    st, _, total = filled
    monkeypatch.chdir(st.root.parent)
    rel = S.Store(st.root.name)
    assert rel.records(columns=["n"]).num_rows == total
    rel.close()
