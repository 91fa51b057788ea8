"""python -m kube_front_proxy.config [--write]: the JSON Schema and the key table of
docs/configuration.md, generated from config/schema.py. Without --write, exits 1 (naming the
files) when the committed ones differ."""

from __future__ import annotations

import argparse
import sys

from kube_front_proxy.config.reference import DOCS_FILE, SCHEMA_FILE, docs_with_table, json_schema


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m kube_front_proxy.config", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the files that differ")
    args = parser.parse_args()
    wanted = {
        SCHEMA_FILE: json_schema(),
        DOCS_FILE: docs_with_table(DOCS_FILE.read_text(encoding="utf-8")),
    }
    stale = [path for path, text in wanted.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]  # fmt: skip
    for path in stale:
        if args.write:
            path.write_text(wanted[path], encoding="utf-8")
        print(f"{'rewrote' if args.write else 'differs'}: {path}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
