"""What every command-line tool of this repository shares.

* ``run(main)``: the ``if __name__ == "__main__"`` wrapper.  A reader that
  goes away (``python -m host_tools.logdecode x.log | head``) ends the tool
  quietly with status 0 instead of a ``BrokenPipeError`` traceback; Ctrl-C
  ends it with status 130 and one line instead of a traceback.
* ``out_console()``: the rich console for a tool's output.  On a terminal it
  is rich's usual one; into a pipe or a file it is 200 columns wide, so a
  table is never cut to 80 columns (check names, paths) by a CI log.
"""
from __future__ import annotations

import os
import sys


def run(main, argv=None) -> None:
    """``sys.exit(main(argv))`` with quiet broken pipes and Ctrl-C."""
    try:
        rc = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        _devnull_stdout()
        rc = 0
    except KeyboardInterrupt:
        try:
            print("interrupted", file=sys.stderr)
        except OSError:
            pass
        rc = 130
    sys.exit(rc)


def _devnull_stdout() -> None:
    # Python flushes stdout once more at exit; point it at /dev/null so that
    # flush cannot raise again (the documented recipe in the signal docs).
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def out_console(**kw):
    from rich.console import Console
    con = Console(**kw)
    if not con.is_terminal and "width" not in kw:
        con = Console(width=200, **kw)
    return con
