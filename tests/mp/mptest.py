"""A tiny test runner for scripts that run on the real ``micropython`` binary.

A test script defines ``test_*`` functions and ends with ``mptest.main(globals())``.
Each result is printed as ``PASS name`` / ``FAIL name: why`` so the pytest
wrapper (tests/test_micropython_units.py) can report them case by case."""
import sys


class Fail(Exception):
    pass


def eq(a, b, what=""):
    if a != b:
        raise Fail("%s: %r != %r" % (what, a, b))


def true(c, what=""):
    if not c:
        raise Fail("expected true: %s" % what)


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise Fail("%s not raised by %r" % (exc, fn))


RAN = []      # names of the scripts whose main() ran (the target runner asks)


def main(g):
    RAN.append(g.get("__name__", "?"))
    names = sorted(k for k in g if k.startswith("test_"))
    only = sys.argv[1] if len(sys.argv) > 1 else None
    failed = 0
    for n in names:
        if only and n != only:
            continue
        try:
            g[n]()
            print("PASS", n)
        except Exception as e:  # report and keep going
            failed += 1
            print("FAIL %s: %s %s" % (n, type(e).__name__, e))
            sys.print_exception(e)
    print("DONE %d failed" % failed)
    sys.exit(1 if failed else 0)
