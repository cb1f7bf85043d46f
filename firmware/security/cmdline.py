"""The console's restricted command grammar (issue 13, C-1).

Without the maintainer role the console never compiles or executes what
it receives: a line is accepted only if it is one call of a named command
with literal arguments, parsed here, and the command is then called
directly (``security.consolegate``)::

    line    := [ "print(" call ")" | call ] [";"]       (blanks around tokens)
    call    := NAME "(" [ arg { "," arg } [","] ] ")"
    arg     := [ NAME "=" ] literal
    literal := integer | string | True | False | None
    integer := ["-"] ( digits | "0x" hexdigits )          (at most 12 characters)
    string  := '...' or "..." of printable ASCII; escapes \\\\ \\' \\" only
               (at most 128 characters)

``parse(src)`` returns ``(name, args, kwargs, printed)`` or raises
``ValueError`` with the reason.  It never raises anything else, whatever
the input (fuzzed on the host: tests/test_security_fuzz.py), and it neither
recurses nor allocates more than the input's size.
"""
from micropython import const

_MAX_ARGS = const(8)
_MAX_STR = const(128)
_MAX_INT = const(12)
_MAX_SRC = const(512)


def _ws(b, i):
    n = len(b)
    while i < n and b[i] in b" \t\r\n":
        i += 1
    return i


def _name(b, i):
    j = i
    n = len(b)
    while j < n and (65 <= b[j] <= 90 or 97 <= b[j] <= 122 or b[j] == 95 or
                     (j > i and 48 <= b[j] <= 57)):
        j += 1
    if j == i:
        raise ValueError("a command name expected at %d" % i)
    return b[i:j].decode(), j


def _literal(b, i):
    n = len(b)
    if i >= n:
        raise ValueError("a value expected at %d" % i)
    c = b[i]
    if c == 39 or c == 34:
        out = bytearray()
        j = i + 1
        while True:
            if j >= n:
                raise ValueError("unterminated string")
            d = b[j]
            if d == c:
                break
            if d == 92:
                j += 1
                if j >= n or b[j] not in b"\\'\"":
                    raise ValueError("only \\\\ \\' \\\" escapes are accepted")
                d = b[j]
            elif d < 32 or d > 126:
                raise ValueError("non-printable byte in a string")
            out.append(d)
            if len(out) > _MAX_STR:
                raise ValueError("string longer than %d" % _MAX_STR)
            j += 1
        return out.decode(), j + 1
    if c == 45 or 48 <= c <= 57:
        j = i + 1 if c == 45 else i
        neg = c == 45
        k = j
        base = 10
        if j + 1 < n and b[j] == 48 and b[j + 1] in b"xX":
            base = 16
            j += 2
            k = j
        while j < n and (48 <= b[j] <= 57 or (base == 16 and (97 <= b[j] <= 102 or 65 <= b[j] <= 70))):
            j += 1
        if j == k or j - i > _MAX_INT:
            raise ValueError("bad integer at %d" % i)
        if j < n and (b[j] == 95 or 65 <= b[j] <= 90 or 97 <= b[j] <= 122 or b[j] == 46):
            raise ValueError("bad integer at %d" % i)
        v = int(b[k:j].decode(), base)
        return (-v if neg else v), j
    w, j = _name(b, i)
    if w == "True":
        return True, j
    if w == "False":
        return False, j
    if w == "None":
        return None, j
    raise ValueError("only literal values are accepted (got %s)" % w)


def _call(b, i):
    name, i = _name(b, i)
    i = _ws(b, i)
    if i >= len(b) or b[i] != 40:
        raise ValueError("'(' expected after %s" % name)
    i = _ws(b, i + 1)
    args = []
    kw = {}
    while True:
        if i < len(b) and b[i] == 41:
            return name, tuple(args), kw, i + 1
        if len(args) + len(kw) >= _MAX_ARGS:
            raise ValueError("too many arguments")
        k = None
        if i < len(b) and (65 <= b[i] <= 90 or 97 <= b[i] <= 122 or b[i] == 95):
            w, j = _name(b, i)
            j2 = _ws(b, j)
            if j2 < len(b) and b[j2] == 61:
                k = w
                i = _ws(b, j2 + 1)
        v, i = _literal(b, i)
        if k is None:
            if kw:
                raise ValueError("positional argument after a keyword argument")
            args.append(v)
        else:
            if k in kw:
                raise ValueError("repeated keyword %s" % k)
            kw[k] = v
        i = _ws(b, i)
        if i < len(b) and b[i] == 44:
            i = _ws(b, i + 1)
        elif i < len(b) and b[i] == 41:
            continue
        else:
            raise ValueError("',' or ')' expected at %d" % i)


def parse(src):
    """``src`` (bytes) -> (name, args, kwargs, printed); ValueError if it is
    not a single command call with literal arguments."""
    if not isinstance(src, (bytes, bytearray)):
        raise ValueError("bytes expected")
    if len(src) > _MAX_SRC:
        raise ValueError("longer than %d bytes" % _MAX_SRC)
    b = bytes(src)
    i = _ws(b, 0)
    printed = False
    first, j = _name(b, i)
    j = _ws(b, j)
    if first == "print" and j < len(b) and b[j] == 40:
        # print(command(...)): the command's value is printed
        name, args, kw, j = _call(b, _ws(b, j + 1))
        j = _ws(b, j)
        if j >= len(b) or b[j] != 41:
            raise ValueError("')' expected at %d" % j)
        j += 1
        printed = True
    else:
        name, args, kw, j = _call(b, i)
    j = _ws(b, j)
    if j < len(b) and b[j] == 59:
        j = _ws(b, j + 1)
    if j != len(b):
        raise ValueError("one command per line (text after it at %d)" % j)
    return name, args, kw, printed
