"""The paper's Tables 1-2: join the cells' rows into the table, and print it.

The cells are measured by one script per data set, ``paper_tables_mnist.py`` (one-vs-rest
MNIST, per normal digit), ``paper_tables_cifar.py`` (one-vs-rest CIFAR-10, per normal class,
where its files are under ``$CAPTUM_CFX_DATA``) and ``paper_tables_colored.py``
(Colored-MNIST, per seed); each writes one row per detector. This joins them and prints
RESULTS.md's tables (``table_merge.py``, ``table_print.py``). From ``benchmarks/``:

    python paper_tables.py --merge A.json B.json --out FILE             # join partial runs
    python paper_tables.py --merge A.json B.json --into T.json --out FILE   # update table T
    python paper_tables.py --table [--out FILE]                         # the RESULTS.md table
    python paper_tables.py --per-class A.json B.json                    # one line per class

``--merge`` pools rows of the same data set and detector (other normal classes or seeds);
with ``--into``, the pooled rows take the place of the table's rows of the same data set and
detector, and its other rows stay as they are. ``--out`` defaults to
``benchmarks/results/paper_tables.json``, the table RESULTS.md shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from provenance import write_json
from table_merge import merge_rows, replace_rows
from table_print import markdown_table, per_class_table

TABLE = Path(__file__).parent / "results" / "paper_tables.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=TABLE, help="the table (default: %(default)s)")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these partial runs into --out")
    parser.add_argument(
        "--into", type=Path, help="with --merge: the table whose rows the merged rows replace"
    )
    parser.add_argument("--table", action="store_true", help="print the tables of --out")
    parser.add_argument(
        "--per-class", type=Path, nargs="+", help="print the per-class table of these files"
    )
    args = parser.parse_args()
    if args.into and not args.merge:
        parser.error("--into replaces a table's rows with --merge's; give --merge too.")
    if args.per_class:
        rows = [row for path in args.per_class for row in json.loads(path.read_text())]
        print(per_class_table(rows))
    elif args.merge:
        rows = merge_rows([row for path in args.merge for row in json.loads(path.read_text())])
        if args.into:
            rows = replace_rows(json.loads(args.into.read_text()), rows)
        write_json(rows, args.out)
        print(markdown_table(rows))
    elif args.table:
        print(markdown_table(json.loads(args.out.read_text())))
    else:
        parser.error(
            "give --merge, --table or --per-class (the fits: paper_tables_mnist.py, "
            "paper_tables_cifar.py, paper_tables_colored.py)."
        )


if __name__ == "__main__":
    main()
