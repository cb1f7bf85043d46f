"""Security settings (issue 13, C-1..C-4), apart from their code.

``firmware/charger.py`` imports this small module so that the settings are
registered and validated at boot; the cryptographic code itself is imported
only when a console unlock, a platform handshake or an update happens, so
the heap at charging does not grow (docs/security.md)."""
import config

SEC_SCHEMA = (
    ("sec.policy", "prefer", None, None, "-",
     "Site security policy: off (plain links only), prefer (authenticate and encrypt "
     "when the peer supports it, else plain and logged), require (refuse an "
     "unauthenticated platform link and unsigned updates). Plain GB/T 27930 vehicles "
     "charge under every policy"),
    ("sec.suite", "sm", None, None, "-",
     "Platform link cipher suite offered first: sm (SM2/SM3/SM4) or aes (HMAC-SHA256 / "
     "AES-128); the other one is the fallback"),
    ("sec.hs_reply_s", 10, 1, 300, "s",
     "Platform link handshake (C-2): the platform's REPLY must arrive this long after "
     "the charger's HELLO was taken for sending, else the attempt fails"),
    ("sec.hs_stage_s", 60, 5, 900, "s",
     "Platform link handshake (C-2): each computing stage on the charger (ephemeral "
     "key, platform signature check, ECDH, signing; SM2 verify is the largest, "
     "~1.7 s of F405 CPU in ~4,900 steps of one 256-bit product) must finish "
     "within this"),
    ("sec.hs_steps", 16, 1, 256, "steps",
     "Platform link handshake (C-2): steps (one 256-bit product each, ~25 kinstr on "
     "the target) per run of the link task; only with no session in progress"),
    ("sec.hs_retry_s", 60, 5, 3600, "s",
     "Platform link: a new handshake this long after the last attempt began, while "
     "the link is not sealed"),
    ("sec.rekey_s", 86400, 0, 2592000, "s",
     "Platform link: new session keys (a new handshake, between sessions only) after "
     "this long sealed; the old keys seal until the new handshake finishes, a failed "
     "one is tried again after sec.hs_retry_s; 0 = never"),
    ("sec.link_ms", 50, 10, 1000, "ms",
     "Platform link task period (handshake steps, sealing telemetry batches)"),
    ("sec.seal_ms", 5, 1, 100, "ms",
     "Platform link: period of the sealing task, one step of the telemetry batch being "
     "sealed per run, none in the records task's pass (at 5 ms: 180 steps a second; "
     "charging needs ~90 at sec.seal_kinstr 50)"),
    ("sec.seal_kinstr", 45, 10, 1000, "kinstr",
     "Platform link: work of one sealing step, in thousands of instructions of the "
     "QEMU target (CTR blocks and hash compressions at their measured cost, at least "
     "one unit; 50 = ~0.7 ms of a 168 MHz F405, inside a 1 ms pass)"),
    ("sec.batch_fill", 200, 32, 220, "bytes",
     "Platform link: seal a telemetry batch once this many bytes of records wait "
     "(a sealed frame carries at most 220)"),
    ("sec.batch_ms", 1000, 50, 60000, "ms",
     "Platform link: seal the waiting records at the latest this long after the "
     "first of them"),
    ("sec.tel_delta", 1, 0, 1, "-",
     "Platform link: 1 = a sealed telemetry batch carries each record as the bytes that "
     "differ from the batch's last record of its length (~3x fewer bytes to seal: the "
     "link's CPU while charging); 0 = the records as they are"),
    ("sec.vin_auth", 0, 0, 1, "-",
     "1 = a session starts only for the VIN the platform authorised (sealed, or "
     "plain pvin() unless sec.policy is require); 0 = no platform authorisation "
     "needed"),
    ("console.auth", 1, 0, 1, "-",
     "Console roles: 1 = read-only diagnostics until an operator or maintainer role "
     "is unlocked by challenge-response (HMAC-SHA256, per-charger key in keys.json); "
     "0 = open console (a bench without keys; never on a site)"),
    ("console.unlock_s", 900, 30, 86400, "s",
     "An unlocked console role expires this long after the unlock"),
    ("console.tries", 3, 1, 20, "tries",
     "Failed unlocks in a row before unlocking is refused for console.lockout_s"),
    ("console.lockout_s", 300, 10, 86400, "s",
     "How long unlocking is refused after console.tries failures"),
    ("console.challenge_s", 60, 5, 600, "s",
     "A challenge must be answered within this time (used once either way)"),
)
config.register(SEC_SCHEMA)

POLICIES = ("off", "prefer", "require")
SUITES = ("sm", "aes")


def _cross(cfg):
    p = cfg.get("sec.policy", "prefer")
    if p not in POLICIES:
        return "sec.policy must be one of off, prefer, require; got %r" % (p,)
    s = cfg.get("sec.suite", "sm")
    if s not in SUITES:
        return "sec.suite must be sm or aes; got %r" % (s,)
    return None


config.CROSS_CHECKS.append(_cross)


def link_configured(cfg, keys_path):
    """Has the site a platform link (C-2)?  ``sec.policy`` require: always
    (with no link keys nothing can be sealed, so nothing leaves); prefer:
    when the key file has the link key of ``sec.suite``; off: never.  Here,
    not in security/platlink.py, so that a charger without a link never
    imports the link code (heap at charging)."""
    pol = cfg["sec.policy"]
    if pol == "off":
        return False
    if pol == "require":
        return True
    try:
        import json
        with open(keys_path) as f:
            d = json.load(f)
    except Exception:
        return False
    return isinstance(d, dict) and \
        ("link_priv" if cfg["sec.suite"] == "sm" else "link_psk") in d
