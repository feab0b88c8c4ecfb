"""`python -m modelops_api [--check]`: write (or check) every file generated from the typed spec.

The CRDs in `crds/` and the chart's `templates/crds/`, and the field tables of docs/api.md. With
`--check`, nothing is written and the exit code is 1 when a committed file differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelops_api import crd, docs


def generated(root: Path) -> dict[Path, str]:
    """Every generated file under the repository `root`, with the text it must have."""
    out = crd.files(root)
    api_md = root / "docs" / "api.md"
    out[api_md] = docs.render(api_md.read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_api",
        description="Write the CRDs and the API tables of the docs from api/modelops_api/spec.py.",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    args = parser.parse_args(argv)
    wanted = generated(args.root)
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path} differs from what api/modelops_api/spec.py generates", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted[path])
            print(f"wrote {path}")
    if args.check and stale:
        print("run `python -m modelops_api` (or `make api`) and commit the result", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
