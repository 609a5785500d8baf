#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The host half of `make bench`: turn the VM's samples into a CSV, a
markdown table (medians, p99, ratios timed/stock) and a PNG plot."""

import csv
import re
import statistics
import sys
from pathlib import Path


def p99(v):
    s = sorted(v)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def main(output, outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    samples = []
    vector = []
    for line in Path(output).read_text().splitlines():
        if line.startswith("csv:"):
            case, fs, method, rep, value = line[4:].split(",")
            samples.append((case, fs, method, int(rep), float(value)))
        m = re.search(r"(held_daemon_times_out_unfrozen|timed_freeze_breaks_the_chain):"
                      r"(\w+): freeze: (-?\d+) after (\d+) attempts, (\d+) ms", line)
        if m:
            vector.append((m.group(1), m.group(2), int(m.group(4)), int(m.group(5))))
    if not samples:
        sys.exit("report: no samples")
    with open(outdir / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "fs", "method", "rep", "value"])
        w.writerows(samples)

    groups = {}
    for case, fs, method, _, v in samples:
        groups.setdefault((case, fs, method), []).append(v)

    unit = {"cycle": "us", "busy": "us", "tput_cycle": "MiB/s", "tput_module": "MiB/s"}
    what = {
        "cycle": "freeze of an idle fs",
        "busy": "freeze under fio 4k buffered writers",
        "tput_cycle": "writer throughput, freeze/thaw every 1 s",
        "tput_module": "writer throughput, module idle vs not loaded",
    }
    base = {"cycle": "stock", "busy": "stock", "tput_cycle": "stock", "tput_module": "not_loaded"}
    rows = ["| case | fs | method | n | median | p99 | ratio (median) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for (case, fs, method), v in sorted(groups.items()):
        b = groups.get((case, fs, base[case]))
        ratio = statistics.median(v) / statistics.median(b) if b else float("nan")
        rows.append(f"| {what[case]} | {fs} | {method} | {len(v)} | "
                    f"{statistics.median(v):.1f} {unit[case]} | {p99(v):.1f} {unit[case]} | "
                    f"{ratio:.3f} |")
    if vector:
        rows += ["", "| deadlock vector (fsA ext4 and xfs) | fsB | n | median | worst |",
                 "| --- | --- | --- | --- | --- |"]
        for kind in sorted({k for _, k, _, _ in vector}):
            over = [ms - 300 * att for name, k, att, ms in vector
                    if k == kind and name.startswith("held")]
            ok = [ms for name, k, att, ms in vector if k == kind and name.startswith("timed")]
            if over:
                rows.append(f"| daemon never answers: ETIMEDOUT overshoot past 3 x 300 ms | "
                            f"{kind} | {len(over)} | {statistics.median(over)} ms | "
                            f"{max(over)} ms |")
            if ok:
                rows.append(f"| daemon answers: time to a successful freeze (timeout 1 s) | "
                            f"{kind} | {len(ok)} | {statistics.median(ok)} ms | {max(ok)} ms |")
        rows.append("| stock FIFREEZE | FUSE, EROFS | - | does not return | "
                    "(watchdog 3 s, then rescued) |")
    table = "\n".join(rows) + "\n"
    (outdir / "table.md").write_text(table)
    print(table)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no plot")
        return
    cases = ["cycle", "busy", "tput_cycle", "tput_module"]
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4.5))
    for ax, case in zip(axes, cases):
        keys = sorted(k for k in groups if k[0] == case)
        ax.boxplot([groups[k] for k in keys], showfliers=True)
        ax.set_xticks(range(1, len(keys) + 1))
        ax.set_xticklabels([f"{k[1]}\n{k[2]}" for k in keys], fontsize=7)
        ax.set_title(what[case], fontsize=9)
        ax.set_ylabel(unit[case])
    fig.suptitle("timed freeze vs stock FIFREEZE (TCG VM: ratios matter, not absolutes)")
    fig.tight_layout()
    fig.savefig(outdir / "plot.png", dpi=90)
    print(f"report: wrote {outdir}/samples.csv, table.md, plot.png")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
