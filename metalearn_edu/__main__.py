"""Command line: ``python -m metalearn_edu <command> ...`` (also installed as ``metalearn-edu``).

Each command lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches, so importing it stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("metalearn_edu.doctor", "check Python, torch, devices, widgets and data"),
    "build-students": (
        "metalearn_edu.course",
        "build the student notebooks (stubs) from the solution notebooks",
    ),
    "train": (
        "metalearn_edu.train_cli",
        "meta-train from a paper preset; write checkpoint and JSON",
    ),
    "evaluate": (
        "metalearn_edu.evaluate_cli",
        "evaluate a checkpoint on 600 tasks, with a confidence interval",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_edu", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((word for word in argv if not word.startswith("-")), None)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        # only the command asked for is imported: `train` must run where the packages of
        # `build-students` (nbformat) are not installed, as on a GPU machine
        if name == chosen:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(command)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
