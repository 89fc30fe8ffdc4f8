"""Turns library errors into one clear line on stderr and an exit code, for the CLI."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from vaelab.config import ConfigError


class VaelabError(RuntimeError):
    """A user-facing error whose message says what was expected and what to do."""


def run_cli_command(func: Callable[[Any], int | None], args: Any) -> int:
    """Runs a sub-command; known error kinds print `vaelab: error: ...` and return 2."""
    from vaelab.data.base import DataError

    try:
        code = func(args)
    except (ConfigError, VaelabError, DataError, FileNotFoundError, FileExistsError) as error:
        print(f"vaelab: error: {error}", file=sys.stderr)
        return 2
    except KeyError as error:  # unknown registry names carry their own message
        message = str(error.args[0]) if error.args else ""
        if not message.startswith("unknown "):
            raise
        print(f"vaelab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print(f"vaelab: interrupted{': ' + str(error) if str(error) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vaelab list presets | head`: the reader left; stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # permission denied, disk full, ...: the OS's words, one line
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"vaelab: error: {error.strerror or error}{where}; nothing already written was "
              "changed (files are written whole or not at all)", file=sys.stderr)
        return 2
    return int(code or 0)


class TrainingDiverged(VaelabError):
    """A loss term became NaN or infinite (the last good checkpoint stays)."""
