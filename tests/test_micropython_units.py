"""Runs every tests/mp/test_*.py on the real micropython binary, case by case."""
import re

import pytest

from conftest import MP_TESTS, BOARDS, run_mp

SCRIPTS = sorted(MP_TESTS.glob("test_*.py"))


def _cases(script):
    return re.findall(r"^def (test_\w+)\(", script.read_text(), re.M)


PARAMS = [(s, c) for s in SCRIPTS for c in _cases(s)]


@pytest.mark.parametrize("script,case", PARAMS,
                         ids=["%s::%s" % (s.stem, c) for s, c in PARAMS])
def test_on_micropython(script, case):
    extra = [BOARDS / "unix", BOARDS / "simlink", BOARDS / "fakes"]
    r = run_mp(script, [case], heapsize="400wK", extra_path=extra)
    out = r.stdout + r.stderr
    assert ("PASS %s" % case) in r.stdout and r.returncode == 0, out
