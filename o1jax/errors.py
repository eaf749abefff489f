"""User-facing errors: anything a user can cause ends in one clear line (exit code 2), never a traceback."""


class UserError(Exception):
    """A problem with the user's input (path, preset, config key, data row). The CLI prints `error: <msg>`, exits 2."""
