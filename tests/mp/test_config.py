"""config.load on the real micropython binary: the strict file reader (input
bounds, JSON quirks) and the cross-field rules of issue 10 item 11.

Every case here is the loader's verdict as the board would give it at boot
(``errors`` non-empty = refuse to charge); the SIL tests in
tests/test_config_files.py boot the firmware on the same kind of files."""
import mptest
import os
import config
import charger  # noqa: F401  (registers every module's schema, as the board does)

D = "/tmp/mp_config_test"


def _file(name, *parts):
    """Write ``parts`` (bytes, or (bytes, repeat) for big files: the test's
    own heap is small) to ``D/name``."""
    try:
        os.mkdir(D)
    except OSError:
        pass
    p = D + "/" + name
    with open(p, "wb") as f:
        for x in parts:
            if isinstance(x, tuple):
                for _ in range(x[1]):
                    f.write(x[0])
            else:
                f.write(x)
    return p


def _load(*parts):
    """config.load of a file made of ``parts``; it must never raise."""
    try:
        return config.load(_file("c.json", *parts))
    except BaseException as ex:      # noqa: B036 -- RecursionError is a RuntimeError here
        raise mptest.Fail("config.load raised %s %s" % (type(ex).__name__, ex))


def _one(err, word, what):
    mptest.true(len(err) == 1 and word in err[0], "%s -> %r" % (what, err))


def test_issue10_item11_deep_nesting_and_large_file_refused():
    # 8000 levels (a file under MAX_FILE): MicroPython's json builds them,
    # then formatting the value for the error message recursed (RuntimeError:
    # maximum recursion depth, not always catchable cleanly on a board); the
    # reader refuses the first nested value instead
    for parts in ((b'{"charger.id": ', (b"[" * 100, 80), (b"]" * 100, 80), b"}"),
                  ((b"[" * 100, 80), (b"]" * 100, 80)),
                  (b'{"charger.id": {"a": {"b": 1}}}',)):
        cfg, err = _load(*parts)
        mptest.eq(len(err), 1, "one error: %r" % err)
        mptest.true("not valid JSON" in err[0], err[0])
        mptest.eq(cfg, config.defaults(), "defaults, not a partial file")
    # large: 100 000 levels (json: MemoryError) or a 4 MB string, never read whole
    for parts in ((b'{"charger.id": ', (b"[" * 1000, 100)),
                  (b'{"charger.id": 1, "x": "', (b"A" * 1000, 4000), b'"}')):
        cfg, err = _load(*parts)
        mptest.eq(err, ["%s/c.json: larger than %d bytes" % (D, config.MAX_FILE)], "large file")
    # the bound is on bytes read, not on what the file claims: whitespace counts
    cfg, err = _load(b'{"charger.id": 2}', (b" ", config.MAX_FILE))
    mptest.true(err and "larger than" in err[0], repr(err))
    cfg, err = _load(b'{"charger.id": 2}', (b" ", config.MAX_FILE - 17))
    mptest.eq((err, cfg["charger.id"]), ([], 2), "exactly MAX_FILE bytes is fine")


QUIRKS = (
    # (file text, words in the one error)
    (b'{"h8.ma": 25,}', "trailing comma"),
    (b'{"h8.ma": 025}', "leading zero"),
    (b'{"session.bhm_ms": 07000}', "leading zero"),
    (b'{"h8.ma": 25, "h8.ma": 26}', "duplicate key 'h8.ma'"),
    (b'{"session.auto_start": 1.0}', "session.auto_start must be true/false, got 1.0"),
    (b'{"h8.ma": 25.0}', "h8.ma must be an integer"),
    (b'{"h8.ma" 25}', "expected ':'"),
    (b'{"h8.ma": 25 26}', "expected ','"),
    (b'{,}', "expected a \"key\""),
    (b'{"h8.ma": 25} {}', "text after the closing }"),
    (b'{"charger.region": "\\q40"}', "unknown escape"),
    (b'{"charger.region": "\xe6\x97\xa5"}', "non-ASCII"),
    (b"", "empty file"),
    (b"[1]", "top level must be an object"),
)


def test_issue10_item11_json_quirks_refused():
    for data, word in QUIRKS:
        cfg, err = _load(data)
        _one(err, word, data)
    # and what JSON allows is still read as JSON says
    cfg, err = _load(b'\r\n{ "h8.ma" : 25 ,\t"charger.region":"\\u0041BC",\n'
                     b'"session.auto_start": false, "lockout.tz_min": -60 }\n')
    mptest.eq(err, [], "valid")
    mptest.eq((cfg["h8.ma"], cfg["charger.region"], cfg["session.auto_start"],
               cfg["lockout.tz_min"]), (25, "ABC", False, -60), "values")
    cfg, err = _load(b'{"session.auto_start": 0}')
    mptest.eq((err, cfg["session.auto_start"]), ([], 0), "0/1 still a flag")
    cfg, err = config.load(D + "/no-such-file.json")
    mptest.eq(err, [], "no file: defaults, valid")


def test_issue10_item11_cross_checks():
    for bad, word in (
            ({"session.cc1_lo_mv": 4800}, "session.cc1_lo_mv must be below session.cc1_hi_mv"),
            ({"session.cc1_hi_mv": 3000}, "session.cc1_lo_mv must be below session.cc1_hi_mv"),
            ({"session.pre_lo": 100}, "session.pre_lo must be below session.pre_hi"),
            ({"session.pre_hi": 40}, "session.pre_below must be within"),
            ({"session.ins_fault_ohm_v": 500}, "session.ins_fault_ohm_v must be below session.ins_ok_ohm_v"),
            ({"session.ins_ok_ohm_v": 50}, "session.ins_fault_ohm_v must be below session.ins_ok_ohm_v")):
        cfg, err = config.load(overrides=bad)
        _one(err, word, bad)


def test_issue10_item11_unlock_bleed_safe_voltages_capped_at_60v():
    for key in ("session.unlock_v", "session.bleed_v", "trip.safe_dv"):
        cfg, err = config.load(overrides={key: 601})
        mptest.eq(err, ["%s = 601 outside 0..600 0.1 V" % key], key)
        cfg, err = config.load(overrides={key: 2000})
        _one(err, "outside 0..600", key)
        cfg, err = config.load(overrides={key: 600})
        mptest.eq(err, [], "%s = 60 V" % key)


def test_issue10_item11_region_is_3_ascii_bytes():
    from gbt.sessioncfg import SessionConfig
    for bad in ("44", "4401", "", "\u65e5\u672c", "4\u00e90", "4 0", "44\n"):
        cfg, err = config.load(overrides={"charger.region": bad})
        _one(err, "charger.region must be exactly 3 printable ASCII characters", repr(bad))
    cfg, err = config.load(overrides={"charger.region": "AB1"})
    mptest.eq(err, [], "valid")
    mptest.eq(SessionConfig(cfg).region, b"AB1", "CRM bytes 6-8")


def test_issue10_item11_store_path_rules():
    for bad in ("", ".hidden", "../safety.rec", "a/b", "events.0", "telemetry",
                "x" * 33, "s\u00e9.rec"):
        cfg, err = config.load(overrides={"store.path": bad})
        _one(err, "store.path must be a plain file name", repr(bad))
    cfg, err = config.load(overrides={"store.path": "latches_2.rec"})
    mptest.eq(err, [], "valid")



def test_removed_trip_tick_ms_names_its_replacement():
    # a config file written for an older firmware: refused with a message
    # that says what to do, not a bare "unknown setting"
    cfg, err = _load(b'{"trip.tick_ms": 5}')
    mptest.eq(err, ["setting 'trip.tick_ms' was removed (the trip path works to the "
                    "protection tick, sched.protect_ms): delete it"], "old key")
    cfg, err = config.load(overrides={"sched.protect_ms": 10})
    mptest.eq(err, [], "the protection tick alone sets the trip margin")


def test_trip_margin_follows_the_protection_tick():
    from safety.trip import k_command_ms
    cfg, err = config.load(overrides={"sched.protect_ms": 10})
    mptest.eq(k_command_ms(cfg), 100 - 20 - 5 - 10, "deadline - release - margin - tick")
    # k_open_ms too small for the tick: refused
    cfg, err = config.load(overrides={"sched.protect_ms": 10, "trip.k_open_ms": 40})
    _one(err, "must exceed trip.k_release_ms + trip.k_margin_ms + 2 x sched.protect_ms (45)",
         "k_open_ms 40")


if __name__ == "__main__":
    mptest.main(globals())
