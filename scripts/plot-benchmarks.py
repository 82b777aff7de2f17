#!/usr/bin/env python3
"""Draw the benchmark's latency CDFs and roaming sweep as PNG files.

Reads samples.csv and summary.csv written by `homeport bench` and writes,
into the output folder:
  cdf-reads-<target>.png    CDF of session reads (read_tail), both modes,
                            home entry and roaming entry
  cdf-writes-<target>.png   the same for turn appends
  roaming-sweep.png         p99 of all reads against the roaming share

Usage: scripts/plot-benchmarks.py RESULTS_DIR OUTPUT_DIR
Needs matplotlib (pip install matplotlib).
"""

import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODE_STYLE = {"default": "-", "all-linearizable": "--"}
ENTRY_COLOR = {"home-entry": "tab:blue", "roaming-entry": "tab:orange"}


def read_samples(path):
    """Return {target: {(mode, operation, entry): [latency ms]}}."""
    samples = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["mode"], row["operation"], row["entry"])
            samples[row["target"]][key].append(float(row["latency_ms"]))
    return samples


def plot_cdf(series, operations, title, path):
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for mode in MODE_STYLE:
        for entry in ENTRY_COLOR:
            values = sorted(v for op in operations for v in series.get((mode, op, entry), []))
            if not values:
                continue
            fractions = [(index + 1) / len(values) for index in range(len(values))]
            label = f"{mode}, {entry} (n={len(values)})"
            axis.step(values, fractions, where="post", linestyle=MODE_STYLE[mode], color=ENTRY_COLOR[entry], label=label)
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel("fraction of requests")
    axis.set_ylim(0, 1.001)
    axis.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
    axis.set_title(title)
    axis.grid(True, which="both", linewidth=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_sweep(summary_path, path):
    points = defaultdict(list)
    with open(summary_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["operation"] == "read_tail" and row["entry"] == "all":
                points[(row["target"], row["mode"])].append((float(row["roaming_share"]) * 100, float(row["p99_ms"])))
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for (target, mode), values in sorted(points.items()):
        values.sort()
        axis.plot([x for x, _ in values], [y for _, y in values], marker="o", linestyle=MODE_STYLE.get(mode, "-"),
                  label=f"{target}, {mode}")
    axis.set_xlabel("roaming share of follow-up requests (%)")
    axis.set_ylabel("p99 of session reads (ms)")
    axis.set_title("Session read p99 against roaming share")
    axis.grid(True, linewidth=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, output = sys.argv[1], sys.argv[2]
    os.makedirs(output, exist_ok=True)
    samples = read_samples(os.path.join(results, "samples.csv"))
    for target, series in samples.items():
        plot_cdf(series, ["read_tail"], f"Session reads ({target})", os.path.join(output, f"cdf-reads-{target}.png"))
        plot_cdf(series, ["append_user_turn", "append_assistant_turn"], f"Turn appends ({target})",
                 os.path.join(output, f"cdf-writes-{target}.png"))
    plot_sweep(os.path.join(results, "summary.csv"), os.path.join(output, "roaming-sweep.png"))
    print(f"plots written to {output}")


if __name__ == "__main__":
    main()
