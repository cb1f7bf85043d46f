"""Batched hypothesis fuzzing (issue 13 part 5: 10**6 inputs per parser).

hypothesis spends ~1 ms of engine work per example (database, data tree,
health checks) whatever the test does: one input per example caps a parser
at ~1,000 inputs/s, 10**6 at ~17 min.  Here every hypothesis example is a
list of ``PER_EXAMPLE`` inputs drawn from the parser's strategy, so the
engine cost is paid once per 200 inputs; the inputs themselves are still
hypothesis draws (and a failure is shrunk by hypothesis as usual).  An
example holds at most ~8 kB of draws: parsers of long inputs use a smaller
``per``.
Strategies of the parsers are kept to few choices per input (a draw costs
~30 us): a structured input is one ``binary`` draw mapped onto fields.

``EVC_FUZZ_EXAMPLES`` (``make fuzz FUZZ_N=...``) sets the inputs per parser;
``EVC_FUZZ_REPORT`` names a file that gets one line per parser:
``name inputs seconds``.
"""
import os
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from conftest import ROOT, micropython_bin, mp_path

PER_EXAMPLE = 200
MP_BATCH = 100000          # inputs per micropython process
DRIVER = ROOT / "tests" / "fuzz_mp_driver.py"


def count(default):
    return int(os.environ.get("EVC_FUZZ_EXAMPLES", str(default)))


def _report(name, n, dt):
    line = "%s %d %.1f" % (name, n, dt)
    print("\nfuzz %s: %d inputs in %.1f s (%.0f/s)" % (name, n, dt, n / max(dt, 1e-9)))
    path = os.environ.get("EVC_FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def fuzz(name, strategy, check, n, per=PER_EXAMPLE, end=None, report=True):
    """Run ``check(x)`` on ``n`` hypothesis inputs from ``strategy`` (in
    lists of PER_EXAMPLE per example), then ``end()`` if given (a parser
    that works on many inputs at once); fails if fewer ran."""
    per = max(1, min(per, n))
    done = [0]

    @settings(max_examples=-(-n // per), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=per, max_size=per))
    def run(xs):
        for x in xs:
            check(x)
        if end is not None:
            end()
        done[0] += len(xs)
    t0 = time.time()
    run()
    if report:
        _report(name, done[0], time.time() - t0)
    assert done[0] >= n, "%s: only %d of %d inputs ran" % (name, done[0], n)
    return done[0]


def _run_batch(kind, recs, tmp_path):
    p = tmp_path / ("%s.bin" % kind)
    with open(p, "wb") as f:
        for r in recs:
            f.write(struct.pack("<I", len(r)) + r)
    r = subprocess.run([micropython_bin(), "-X", "heapsize=8M", str(DRIVER), kind, str(p)],
                       capture_output=True, text=True, timeout=3600,
                       env=dict(os.environ, MICROPYPATH=mp_path(ROOT / "boards" / "simlink")),
                       cwd=str(ROOT), stdin=subprocess.DEVNULL)
    out = r.stdout.strip().splitlines()
    last = out[-1] if out else ""
    if not last.startswith("OK"):
        idx = last.split()[1] if last.startswith("FAIL") else "?"
        bad = recs[int(idx)].hex() if idx.isdigit() and int(idx) < len(recs) else "?"
        pytest.fail("%s: %s\ninput: %s\n%s%s" % (kind, last, bad, r.stdout[-3000:], r.stderr[-2000:]))
    assert int(last.split()[1]) == len(recs)
    return len(recs)


def fuzz_mp(kind, strategy, encode, n, tmp_path, per=PER_EXAMPLE):
    """The viper parsers (``ptr8`` does not exist on CPython): hypothesis
    generates ``n`` inputs here, tests/fuzz_mp_driver.py checks them on the
    real micropython, MP_BATCH per process; a failure names the input."""
    recs, done = [], [0]

    def collect(x):
        recs.append(encode(x))
        if len(recs) >= MP_BATCH:
            done[0] += _run_batch(kind, recs, tmp_path)
            recs.clear()
    t0 = time.time()
    fuzz(kind, strategy, collect, n, per, report=False)
    if recs:
        done[0] += _run_batch(kind, recs, tmp_path)
    _report(kind + " (micropython)", done[0], time.time() - t0)
    assert done[0] >= n
