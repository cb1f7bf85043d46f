"""The console start (``ChargerApp(console=True)``): the board's stream,
the diagnostic commands, the board's own commands, the C-1 roles."""


def start(app, poll):
    from diag.console import Console
    board = app.board
    cfg = app.cfg
    # Each board knows its REPL port (stdin/stdout of the SIL process,
    # the USB VCP / UART on STM32 and ESP32).
    app.console = Console(board.console_stream(cfg), {"app": app}, cfg)
    from diag import commands
    d = commands.install(app.console, app)
    # Board commands (the SIL board: plug() / unplug() of the bench).
    for name, fn, text in board.console_commands(app):
        d.add_board_command(name, fn, text)
    auth = board.console_auth   # a bench may open it
    if cfg["console.auth"] if auth is None else auth:
        from security.consolegate import install as _roles  # C-1: console roles
        _roles(app.console, app, d)
    app.console.start()
    app.sched.add("console", poll, cfg["sched.console_ms"], 5)
