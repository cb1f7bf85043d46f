"""The configuration file's strict JSON reader (``config.read``/``parse``).

``read`` uses its own strict parser, not the ``json``
module: MicroPython's ``json`` accepts text that is not JSON (a trailing
comma, ``07000``, ``{"a" 1}``, ``{"a": 1 2}``, unknown escapes), keeps the
last of duplicate keys, recurses on nesting and reads the whole file into
the heap.  The parser takes exactly one flat JSON object of scalars
(RFC 8259 grammar; ASCII only; at most ``MAX_FILE`` bytes) and rejects,
with the line number: a trailing comma, a number with a leading zero, a
duplicate key, an array or object as a value (this is also the nesting
bound: depth 1, no recursion anywhere), text after the object, a non-ASCII
byte, a number longer than ``_NUM_MAX`` characters.  A number with a
fraction or exponent is read as a float, which no setting accepts (not even
a true/false one: ``1.0`` is refused).  ``host_tools/config_check.py``
runs this very code on the ``micropython`` binary, so host and board give
the same verdict for the same file.
"""


from config import MAX_FILE

_NUM_MAX = 24          # longest number token (characters)

_WS = b" \t\r\n"
_ESC = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C,
        0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}


class _Bad(Exception):
    pass


def _line(b, i):
    return b.count(b"\n", 0, i) + 1 if i <= len(b) else b.count(b"\n") + 1


def _ws(b, i):
    n = len(b)
    while i < n and b[i] in _WS:
        i += 1
    return i


def _str(b, i):
    """String token at ``b[i] == '"'``: (str, index after it)."""
    out = bytearray()
    i += 1
    n = len(b)
    while True:
        if i >= n:
            raise _Bad((i, "unterminated string"))
        c = b[i]
        if c == 0x22:
            return str(out, "ascii"), i + 1
        if c == 0x5C:
            i += 1
            e = b[i] if i < n else 0
            if e in _ESC:
                out.append(_ESC[e])
                i += 1
            elif e == 0x75:                       # \uXXXX
                u = 0
                for k in range(i + 1, i + 5):
                    h = b[k] if k < n else 0
                    if 0x30 <= h <= 0x39:
                        h -= 0x30
                    elif 0x61 <= (h | 0x20) <= 0x66:
                        h = (h | 0x20) - 0x57
                    else:
                        raise _Bad((i, "bad \\u escape"))
                    u = u * 16 + h
                if u >= 0x80:
                    raise _Bad((i, "\\u%04x: settings are ASCII" % u))
                out.append(u)
                i += 5
            else:
                raise _Bad((i, "unknown escape"))
        elif c < 0x20:
            raise _Bad((i, "control character in a string"))
        else:
            out.append(c)
            i += 1


def _digits(b, j, n):
    """Index after the run of ASCII digits at ``b[j]``."""
    while j < n and 0x30 <= b[j] <= 0x39:
        j += 1
    return j


def _num(b, i):
    """Number token (JSON grammar): (int or float, index after it)."""
    n = len(b)
    j = i
    if j < n and b[j] == 0x2D:
        j += 1
    d0 = j
    j = _digits(b, j, n)
    if j == d0:
        raise _Bad((i, "not a value"))
    if b[d0] == 0x30 and j - d0 > 1:
        raise _Bad((i, "number with a leading zero"))
    is_float = False
    if j < n and b[j] == 0x2E:
        is_float = True
        k = j + 1
        j = _digits(b, k, n)
        if j == k:
            raise _Bad((i, "bad number"))
    if j < n and b[j] in b"eE":
        is_float = True
        j += 1
        if j < n and b[j] in b"+-":
            j += 1
        k = j
        j = _digits(b, k, n)
        if j == k:
            raise _Bad((i, "bad number"))
    if j - i > _NUM_MAX:
        raise _Bad((i, "number longer than %d characters" % _NUM_MAX))
    t = b[i:j]
    return (float(t) if is_float else int(t)), j


def _value(b, i, key):
    n = len(b)
    c = b[i] if i < n else 0
    if c == 0x22:
        return _str(b, i)
    for word, v in ((b"true", True), (b"false", False), (b"null", None)):
        if b[i:i + len(word)] == word:
            return v, i + len(word)
    if c == 0x5B or c == 0x7B:
        raise _Bad((i, "%r: an array/object is not a setting value "
                       "(the file is one flat object)" % key))
    return _num(b, i)


def parse(b):
    """Strict parse of one flat JSON object of scalars (``bytes``) into a
    dict; raises ``ValueError("line N: why")``.  No recursion; allocates
    the dict, its keys and values only."""
    try:
        for k in range(len(b)):
            if b[k] >= 0x80:
                raise _Bad((k, "non-ASCII byte 0x%02x (settings are ASCII)" % b[k]))
        n = len(b)
        i = _ws(b, 0)
        if i >= n:
            raise _Bad((i, "empty file"))
        if b[i] != 0x7B:
            raise _Bad((i, "top level must be an object"))
        d = {}
        i = _ws(b, i + 1)
        if i < n and b[i] == 0x7D:
            i += 1
        else:
            while True:
                if i >= n or b[i] != 0x22:
                    raise _Bad((i, "expected a \"key\""))
                k0 = i
                key, i = _str(b, i)
                i = _ws(b, i)
                if i >= n or b[i] != 0x3A:
                    raise _Bad((i, "expected ':' after %r" % key))
                i = _ws(b, i + 1)
                v, i = _value(b, i, key)
                if key in d:
                    raise _Bad((k0, "duplicate key %r" % key))
                d[key] = v
                i = _ws(b, i)
                c = b[i] if i < n else 0
                if c == 0x2C:
                    i = _ws(b, i + 1)
                    if i < n and b[i] == 0x7D:
                        raise _Bad((i, "trailing comma before }"))
                elif c == 0x7D:
                    i += 1
                    break
                else:
                    raise _Bad((i, "expected ',' or '}' after the value of %r" % key))
        i = _ws(b, i)
        if i < n:
            raise _Bad((i, "text after the closing }"))
        return d
    except _Bad as e:
        at, why = e.args[0]
        raise ValueError("line %d: %s" % (_line(b, at), why))


def read(path):
    """The overrides in the file at ``path``: ``(dict, error or None)``.
    A missing file is ``({}, None)`` (defaults apply, a valid configuration).
    Never raises: an unreadable, oversized or malformed file gives an error."""
    try:
        f = open(path, "rb")
    except OSError:
        return {}, None
    try:
        try:
            # a buffer the size of the file, not of the bound: on a
            # fragmented heap one free 16 KB block is not a given (the
            # console's cfg_set once found none), and a config file is small
            want = MAX_FILE + 1
            try:
                import os
                n = os.stat(path)[6]
                if 0 <= n < MAX_FILE:
                    want = n + 1
            except Exception:
                pass
            data = f.read(want)
            if len(data) == want and want <= MAX_FILE:     # grew since the stat
                data += f.read(MAX_FILE + 1 - want)
        finally:
            f.close()
        if len(data) > MAX_FILE:
            return {}, "%s: larger than %d bytes" % (path, MAX_FILE)
        return parse(data), None
    except ValueError as e:
        return {}, "%s: not valid JSON (%s)" % (path, e)
    except MemoryError:
        return {}, "%s: not enough memory to read it" % path
    except Exception as e:
        return {}, "%s: unreadable (%s %s)" % (path, type(e).__name__, e)
