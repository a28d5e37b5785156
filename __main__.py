"""``python -m topoclear COMMAND``: TopoClear from the command line, without QGIS.

Commands: ``batch`` runs a job list on a dask cluster (``python -m topoclear batch --help``).
"""
from __future__ import annotations

import sys

COMMANDS = {"batch": "run a job list (one job per scene) on a dask cluster or in this process"}
USAGE = "usage: python -m topoclear COMMAND [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<8}{text}" for name, text in COMMANDS.items()) + "\n\n'python -m topoclear COMMAND --help' for more."


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "batch":
        from topoclear.engine.batch.cli import main as batch

        return batch(rest)
    print(f"python -m topoclear: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
