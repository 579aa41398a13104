"""Print the project's requirements (its dependencies and the named extras) from pyproject.toml,
one per line, so that an image installs them in a layer of their own before the source is copied:
a code change then rebuilds only the small project wheel that the runtime stage installs on top.

    python requirements.py [--without NAME]... EXTRA...
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def requirement_name(requirement: str) -> str:
    """The normalized project name of a requirement ("uvicorn[standard]>=0.29" -> uvicorn)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], without: set[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"error: no such extra in {pyproject}: {', '.join(unknown)}")
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += optional[extra]
    skip = {requirement_name(name) for name in without}
    return [r for r in wanted if requirement_name(r) not in skip]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="optional-dependency groups to include")
    parser.add_argument("--without", action="append", default=[], help="leave this project out")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    print("\n".join(requirements(args.pyproject, args.extras, set(args.without))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
