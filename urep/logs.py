"""Console logging of the `urep` command: quiet TensorFlow, stage lines by default, detail with `-v`.

`quiet_tensorflow` must run before TensorFlow is imported (its C++ logging level is read once, at import).
`configure_console` installs the console handler: by default it shows urep's INFO records except the
per-epoch training detail (logger `urep.training...`), which still reaches `log.txt` and TensorBoard;
`verbose` shows everything, TensorFlow's own messages included.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Loggers whose INFO records are per-epoch/per-step detail: console only with `-v`.
DETAIL_LOGGERS = ("urep.training",)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Set TensorFlow's logging environment before it is imported; a variable the user set is kept.

    Not verbose: `TF_CPP_MIN_LOG_LEVEL=3` hides the C++ banners (oneDNN, CPU features, the `cuInit`
    error of a machine without a GPU) and the Python `tensorflow`/`absl` loggers show errors only.
    Verbose: level 0, everything shown.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    for name in ("matplotlib", "PIL", "h5py"):  # their DEBUG output is about fonts and files, never useful
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C++ libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its load-time C++ messages hidden.

    Some (`cudart_stub.cc: Could not find cuda drivers` on a machine without a GPU) are written before
    TensorFlow reads `TF_CPP_MIN_LOG_LEVEL`, so only silencing stderr during the import hides them. An
    import error still raises (its Python traceback is printed after stderr is restored); `-v` shows all.
    """
    if "tensorflow" in sys.modules:
        return
    with _stderr_silenced():
        import tensorflow  # noqa: F401


class _DetailFilter(logging.Filter):
    """Drop INFO-and-below records of the detail loggers (they go to log.txt, not the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in DETAIL_LOGGERS)


def configure_console(verbose: bool = False) -> logging.Handler:
    """Log urep's records to stderr: INFO without per-epoch detail, or DEBUG and all detail when `verbose`."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    if not verbose:
        handler.addFilter(_DetailFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
