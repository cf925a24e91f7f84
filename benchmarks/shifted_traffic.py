"""Labelled traffic with a synthetic shift: offensive words replaced by tokens no model has seen
(slang that changed), so a drift check has something to find and retraining something to learn.

``python -m benchmarks.shifted_traffic OUT.csv [--rows N] [--seed S] [--no-shift]`` writes N
random rows of the data set (TURNOUT_DATASET; the file is sorted by text, so its first rows are
no fair sample) with the shift applied, in its own columns: feed it to ``turnout replay OUT.csv
--text-col tweet --label-col class --label-map 0=1,1=1,2=0 --feedback``.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from pathlib import Path

from router.core.settings import Settings

OFFENSIVE = re.compile(
    r"\b(bitch|bitches|hoe|hoes|pussy|fuck|fucking|nigga|niggas|shit|ass|faggot|trash)\b", re.I
)


def shifted(text: str) -> str:
    """Each offensive word becomes a new token (``bitch`` -> ``zqhctibx``)."""
    return OFFENSIVE.sub(lambda m: "zq" + m.group(1)[::-1].lower() + "x", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-shift", action="store_true", help="random rows, left as they are")
    args = parser.parse_args()
    with Settings().dataset.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    picked = random.Random(args.seed).sample(rows, min(args.rows, len(rows)))
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in picked:
            text = row["tweet"] if args.no_shift else shifted(row["tweet"])
            writer.writerow({**row, "tweet": text})
    kind = "random" if args.no_shift else "shifted"
    print(f"wrote {len(picked)} {kind} rows to {args.out}")


if __name__ == "__main__":
    main()
