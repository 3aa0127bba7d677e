"""The ``implicit-inverse`` entry point: the parser of every subcommand and error handling."""

from __future__ import annotations

import os
import pickle
import sys
import warnings

from .. import __version__
from .._runtime import torch_threads
from . import blur, demo, evaluate, pretrain, restore, train
from ._common import PROG, CommandError, Parser

COMMANDS = (demo, train, pretrain, evaluate, blur, restore)


def build_parser():
    """The command-line parser (subcommands ``demo``, ``train``, ``pretrain``, ``evaluate``,
    ``blur``, ``restore``).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = Parser(
        prog=PROG,
        description="Implicit (deep equilibrium) networks for imaging inverse problems.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv=None):
    """Run the ``implicit-inverse`` command.

    Parameters
    ----------
    argv : list of str or None, default None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad arguments or data (one line on stderr, nothing
        written), 1 when training diverged or on an unexpected error (one line; the environment
        variable ``IMPLICIT_INVERSE_DEBUG=1`` shows the traceback instead), 130 when
        interrupted (an output being written is removed, earlier ones are complete).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse errors
        return exit_.code if isinstance(exit_.code, int) else 2
    from ..estimators import DivergenceError

    debug = os.environ.get("IMPLICIT_INVERSE_DEBUG", "") not in ("", "0")
    try:
        with torch_threads(args.threads), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.handler(args)
    except (CommandError, ValueError, TypeError, OSError, pickle.UnpicklingError,
            EOFError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except DivergenceError as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug: one line, the traceback on request
        if debug:
            raise
        print(f"{PROG}: internal error: {type(error).__name__}: {_one_line(error)} (set "
              "IMPLICIT_INVERSE_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    return 0


def _one_line(error):
    if isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.strerror}: {error.filename}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {category.__name__}: {' '.join(str(message).split())}",
          file=sys.stderr)
