"""`latentray report DIR`: the comparison table of an evaluation directory, and PNG plots
of accuracy (with 95% intervals, and the chance line of a multiple-choice set), decoded
tokens and seconds per problem per method."""
from __future__ import annotations

import json
from pathlib import Path

from latentray.agents.errors import LatentrayError

from latentray.runtime.eval.results import read_results
from latentray.runtime.eval.stats import format_table, method_figures


def print_report(out_dir: Path, plots: bool = True) -> list:
    rows, summaries = read_results(out_dir)
    figures = method_figures(rows, summaries)
    ids = {f["method"]: {r["id"] for r in rows if r["method"] == f["method"]} for f in figures}
    first = next(iter(ids.values()))
    if any(s != first for s in ids.values()):
        print("warning: the methods were run on different problems; compare with care")
    datasets = sorted({r["dataset"] for r in rows})
    print(f"{out_dir}: {', '.join(datasets)}; seconds are run time after the models loaded, per problem")
    print(format_table(figures))
    (Path(out_dir) / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    if plots:
        for path in write_plots(out_dir, figures):
            print(f"wrote {path}")
    return figures


def write_plots(out_dir: Path, figures: list) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LatentrayError("plots need matplotlib: run `pip install 'matplotlib>=3.7,<4'`") from None
    methods = [f["method"] for f in figures]
    panels = [
        ("accuracy.png", "accuracy (95% CI)", [f["accuracy"] for f in figures],
         [[max(0.0, f["accuracy"] - f["ci_low"]) for f in figures],
          [max(0.0, f["ci_high"] - f["accuracy"]) for f in figures]]),
        ("tokens.png", "decoded tokens per problem", [f["tokens_per_problem"] for f in figures], None),
        ("time.png", "seconds per problem", [f["seconds_per_problem"] for f in figures], None),
    ]
    paths = []
    for name, title, values, err in panels:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.bar(methods, values, yerr=err, capsize=6, color=["#888888", "#4c72b0", "#dd8452", "#55a868"][:len(values)])
        ax.set_title(title)
        odds = [f["chance"] for f in figures if f.get("chance") is not None]
        if name == "accuracy.png" and odds:  # the methods share their problems, so one line
            ax.axhline(sum(odds) / len(odds), color="#c44e52", linestyle="--", linewidth=1.2,
                       label=f"chance {sum(odds) / len(odds):.1%}")
            ax.legend(loc="upper right", fontsize=7, frameon=False)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.1%}" if name == "accuracy.png" else f"{v:.1f}", (i, v), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")
        fig.tight_layout()
        path = Path(out_dir) / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
