"""Every profanity recipe trained on the full Davidson data, measured on the stratified hold-out.

The figures the README's model table and the cards (``turnout train --all``) report: ROC AUC
(goal >= 0.985 for at least one recipe), F1, accuracy, the expected calibration error (goal
<= 0.03; ten equal-width bins) and the fit time. ``--recipes v2 v4`` measures a subset.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from model_workers.recipes import RECIPES
from model_workers.train import load_dataset, train
from router.core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="*", default=sorted(RECIPES))
    args = parser.parse_args()
    dataset = load_dataset(Settings().dataset)
    print(
        f"profanity recipes on the full data ({len(dataset.texts):,} tweets, "
        f"20% stratified hold-out)"
    )
    print(f"  {'recipe':7s} {'ROC AUC':>8s} {'F1':>7s} {'accuracy':>9s} {'ECE':>7s} {'fit s':>7s}")
    best = 0.0
    calibrated = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            started = time.perf_counter()
            card = train(RECIPES[name], name, dataset, Path(tmp))
            m, ece = card["metrics"], card["calibration"]["ece"]
            best = max(best, m["roc_auc"])
            if ece <= 0.03:
                calibrated.append(name)
            print(
                f"  {name:7s} {m['roc_auc']:8.4f} {m['f1']:7.4f} {m['accuracy']:9.4f} "
                f"{ece:7.4f} {card['fit_seconds']:7.1f}   ({time.perf_counter() - started:.0f} s "
                "with evaluation)"
            )
    print(f"  best ROC AUC {best:.4f} (goal >= 0.985: {'met' if best >= 0.985 else 'NOT met'})")
    print(f"  ECE <= 0.03: {', '.join(calibrated) or 'none'}")


if __name__ == "__main__":
    main()
