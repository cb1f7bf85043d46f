"""Settings of the console and the CAN trace, apart from their code.

``firmware/charger.py`` imports this small module so that every setting is
registered and validated at boot, while the console itself (about 25 KB of
bytecode) is only loaded when a board enables it."""
import config

CONSOLE_SCHEMA = (
    ("console.code_max", 2048, 256, 32768, "bytes",
     "Largest command the console accepts (raw REPL, raw paste, a friendly-REPL block); "
     "preallocated at start. mpremote fs cp sends <= ~1.1 KB per command"),
    ("console.rx_chunk", 64, 1, 1024, "bytes",
     "Most input bytes taken per poll: bounds the console's own time per tick"),
    ("console.tx_buf", 128, 16, 1024, "bytes",
     "Output staging buffer (fewer, larger writes to the stream)"),
    ("console.paste_window", 128, 16, 4096, "bytes",
     "Raw-paste flow-control window announced to the host"),
    ("console.paste_timeout_ms", 3000, 100, 60000, "ms",
     "A raw paste with no byte for this long is abandoned (host vanished)"),
    ("console.tx_timeout_ms", 20, 0, 1000, "ms",
     "Longest wait for the console peer to accept output before it is dropped "
     "(board stream adapters)"),
)
config.register(CONSOLE_SCHEMA)

TRACE_SCHEMA = (
    ("diag.trace_frames", 64, 8, 1024, "frames",
     "CAN trace: frames waiting to be printed; more are dropped and counted"),
    ("diag.trace_lines", 16, 1, 256, "lines",
     "CAN trace: most lines printed per console poll (output rate bound)"),
)
config.register(TRACE_SCHEMA)
