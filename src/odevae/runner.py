"""Run a workflow script: log to the rule's log file, report bad input cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable

from odevae.errors import InputError

log = logging.getLogger("odevae")


def run_script(snakemake, main: Callable) -> None:
    """Call ``main(snakemake)`` with stdout, stderr and logging sent to ``log[0]``.

    An :class:`InputError` becomes one line on the terminal and in the log (no
    traceback) and exit status 1, so Snakemake removes the job's partial outputs.
    Threads for torch follow the rule's ``threads`` where the script imported torch
    (scripts call this after their imports); other scripts never load it.

    In the job's own process (Snakemake's script preamble bound ``snakemake`` in
    ``__main__``) a successful ``main`` ends the process at once, with the outputs
    and the log written and closed: Python's finalisation would then tear down
    every imported module, which after torch, Lightning, statsmodels or seaborn
    takes 0.1 to 1.1 s a job and writes nothing. Other callers (tests) get the
    call's return as usual.
    """
    log_path = snakemake.log[0]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with open(log_path, "w", buffering=1) as handle:
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            logging.basicConfig(
                stream=handle,
                level=logging.INFO,
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                force=True,
            )
            _route_library_loggers()
            _set_threads(snakemake.threads)
            try:
                main(snakemake)
            except InputError as err:
                log.error("%s", err)
                print(f"odevae: {err}", file=sys.__stderr__)
                sys.exit(1)
            finally:
                # the root logger as found, not bound to the closed log (in-process
                # callers such as tests go on logging)
                root.handlers[:] = handlers
                root.setLevel(level)
    if _own_process(snakemake):
        _end_process()


def _own_process(snakemake) -> bool:
    """Whether this process is the job's script itself, run by Snakemake, whose
    preamble binds ``snakemake`` in ``__main__`` (not a caller such as a test)."""
    return getattr(sys.modules.get("__main__"), "snakemake", None) is snakemake


def _end_process() -> None:
    """Exit 0 now, skipping Python's finalisation: the outputs are closed by the
    libraries that wrote them and the log by :func:`run_script`; what is left is
    tearing down modules and objects that nothing reads again."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(0)


def _route_library_loggers() -> None:
    """Send loggers that libraries bound to the terminal (Lightning) to the log."""
    for logger in logging.Logger.manager.loggerDict.values():
        if not isinstance(logger, logging.Logger):
            continue
        terminal = [
            h
            for h in logger.handlers
            if isinstance(h, logging.StreamHandler)
            and getattr(h, "stream", None) in (sys.__stderr__, sys.__stdout__)
        ]
        for handler in terminal:
            logger.removeHandler(handler)
        if terminal:
            logger.propagate = True


def _set_threads(threads: int) -> None:
    """Torch's threads to the rule's, if the script loaded torch; importing it here
    would add seconds to every light job."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(int(threads), 1))
