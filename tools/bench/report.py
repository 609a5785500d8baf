#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The host half of `make bench`: turn the VMs' samples into CSVs, a
markdown table (medians, p90, p99, ratios to stock with 95% bootstrap
intervals over the interleaved pairs, each target met or not), the
per-stage breakdown and a PNG plot.

    report.py STOCK_OUTPUT OUTDIR [RFC_OUTPUT]

STOCK_OUTPUT: the stock kernel's VM (bench with the module, the vector
tests); RFC_OUTPUT: the RFC kernel's VM (bench --rfc).  Their samples are
told apart by a kernel column, "stock" or "rfc".  The first table puts
the three side by side: stock FIFREEZE and the module's timed freeze (their
ratio from the stock kernel's interleaved pairs) and the RFC's FIFREEZE with
its deadline (its ratio from the RFC kernel's pairs, against the same
kernel's FIFREEZE with no deadline)."""

import csv
import random
import re
import statistics
import sys
from pathlib import Path

BOOT = 2000

# case -> (method, baseline, "le"|"ge", bound): the ratio method/baseline must be <= or >=
# bound. Met: the whole 95% interval is on the right side; not met: the whole interval is on
# the wrong side; undecided otherwise.
TARGETS = {
    ("cycle", "timed"): ("stock", "le", 1.05),
    ("busy", "timed"): ("stock", "le", 1.05),
    ("tput_cycle", "timed"): ("stock", "ge", 0.95),
    ("tput_module", "loaded"): ("not_loaded", "ge", 0.95),
    ("cycle", "rfc"): ("stock", "le", 1.05),
    ("busy", "rfc"): ("stock", "le", 1.05),
    ("tput_cycle", "rfc"): ("stock", "ge", 0.95),
}

STAGE_NAMES = {
    ("begin", "switch1"): "s_umount, checks",
    ("switch1", "switched1"): "L1 reader switch (one GP; all levels for timed)",
    ("switched1", "drained1"): "L1 drain",
    ("drained1", "switch2"): "L1 -> L2",
    ("switch2", "switched2"): "L2 reader switch (GP)",
    ("switched2", "drained2"): "L2 drain",
    ("drained1", "drained2"): "L2 drain",
    ("drained2", "sync"): "L2 -> sync",
    ("sync", "synced"): "sync",
    ("synced", "switch3"): "sync -> L3",
    ("switch3", "switched3"): "L3 reader switch (GP)",
    ("switched3", "drained3"): "L3 drain",
    ("synced", "drained3"): "L3 drain (after a sync)",
    ("drained2", "drained3"): "L3 drain",
    ("drained3", "sync"): "L3 -> sync",
    ("drained3", "end"): "->freeze_fs() and the rest",
}


def pct(v, q):
    s = sorted(v)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ratio_ci(a, b):
    """Ratio of medians a/b and its 95% percentile-bootstrap interval over pairs."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    point = statistics.median(a) / statistics.median(b)
    rnd = random.Random(1)
    rs = []
    for _ in range(BOOT):
        idx = [rnd.randrange(n) for _ in range(n)]
        rs.append(statistics.median([a[i] for i in idx]) /
                  statistics.median([b[i] for i in idx]))
    rs.sort()
    return point, rs[int(0.025 * BOOT)], rs[int(0.975 * BOOT) - 1]


def verdict(lo, hi, how, bound):
    if how == "le":
        return "met" if hi <= bound else "not met" if lo > bound else "undecided"
    return "met" if lo >= bound else "not met" if hi < bound else "undecided"


def parse(output, kernel, out):
    """The lines of one VM's output into @out's lists, tagged with @kernel."""
    for line in Path(output).read_text().splitlines():
        if line.startswith("csv:"):
            case, fs, method, rep, value = line[4:].split(",")
            out["samples"].append((kernel, case, fs, method, int(rep), float(value)))
        elif line.startswith("stop:"):
            case, fs, reps, secs, half, how = line[5:].split(",")
            out["stops"].append((kernel, case, fs, int(reps), int(secs), float(half), how))
        elif line.startswith("rfc:"):
            out["rfc"] = line[4:].split(",")
        elif line.startswith("gaveup:"):
            case, fs, method, rep = line[7:].split(",")
            key = (kernel, case, fs, method)
            out["gaveup"][key] = out["gaveup"].get(key, 0) + 1
        elif line.startswith("stage:"):
            case, fs, method, rep, frm, to, us = line[6:].split(",")
            out["stages"].append((case, fs, method, int(rep), frm, to, float(us)))
        elif line.startswith("slowsum:"):
            n, d, method, ratio, lo, hi, blocked, goal = line[8:].split(",")
            out["slow"].append((int(n), int(d), method, float(ratio), float(lo), float(hi),
                                float(blocked), float(goal)))
        elif line.startswith("slow:"):
            n, d, method, rep, ms, calls, attempts, blocked = line[5:].split(",")
            out["slow_samples"].append((int(n), int(d), method, int(rep), float(ms),
                                        int(calls), int(attempts), float(blocked)))
        elif line.startswith("call:"):
            case, fs, method, rep, us = line[5:].split(",")
            out["calls"].setdefault((case, fs, method), {})[int(rep)] = float(us)
        m = re.search(r"(held_daemon_times_out_unfrozen|timed_freeze_breaks_the_chain):"
                      r"(\w+): freeze: (-?\d+) after (\d+) attempts, (\d+) ms", line)
        if m:
            out["vector"].append((m.group(1), m.group(2), int(m.group(4)), int(m.group(5))))


def main(output, outdir, rfc_output=None):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    parsed = {"samples": [], "stops": [], "stages": [], "calls": {}, "vector": [], "rfc": None,
              "gaveup": {}, "slow": [], "slow_samples": []}
    parse(output, "stock", parsed)
    if parsed["rfc"]:
        sys.exit(f"report: {output} is bench --rfc output, not the stock kernel's")
    if rfc_output:
        parse(rfc_output, "rfc", parsed)
        if not parsed["rfc"]:
            sys.exit(f"report: {rfc_output} has no rfc: line: not bench --rfc output")
    samples, stops, stages = parsed["samples"], parsed["stops"], parsed["stages"]
    calls, vector = parsed["calls"], parsed["vector"]
    if not samples and not stages and not parsed["slow"]:
        sys.exit("report: no samples")
    with open(outdir / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "case", "fs", "method", "rep", "value"])
        w.writerows(samples)

    groups = {}
    for kernel, case, fs, method, rep, v in samples:
        groups.setdefault((kernel, case, fs, method), {})[rep] = v

    def paired(case, fs, m1, m2, kernel="stock"):
        a, b = groups.get((kernel, case, fs, m1), {}), groups.get((kernel, case, fs, m2), {})
        reps = sorted(set(a) & set(b))
        return [a[r] for r in reps], [b[r] for r in reps]

    unit = {"cycle": "us", "busy": "us", "tput_cycle": "MiB/s", "tput_module": "MiB/s"}
    what = {
        "spaced": "freeze of an idle fs, 200 ms after the last thaw",
        "cycle": "freeze of an idle fs",
        "busy": "freeze under fio 4k buffered writers",
        "tput_cycle": "writer throughput, freeze/thaw every 1 s",
        "tput_module": "writer throughput, module idle vs not loaded",
    }
    base = {"cycle": "stock", "busy": "stock", "tput_cycle": "stock", "tput_module": "not_loaded"}

    # Stock, module and RFC side by side.  module / stock: the stock kernel's pairs; RFC /
    # stock: the RFC kernel's pairs, its FIFREEZE with the sysctl's deadline against the
    # same kernel's with none.  The medians and p99 in the case's unit.
    def ratio(kernel, case, fs, method):
        a, b = paired(case, fs, method, "stock", kernel)
        if not a:
            return None
        point, lo, hi = ratio_ci(a, b)
        _, how, bound = TARGETS[(case, method)]
        return len(a), point, lo, hi, verdict(lo, hi, how, bound)

    def med_p99(kernel, case, fs, method):
        v = list(groups.get((kernel, case, fs, method), {}).values())
        return (statistics.median(v), pct(v, 0.99)) if v else (None, None)

    def show(mp, u):
        med, p99 = mp
        if med is None:
            return "-"
        if u == "us":
            return f"{med / 1000:.2f} / {p99 / 1000:.1f} ms"
        return f"{med:.1f} {u}"	# a throughput's p99 is its best run: the median only

    def show_ratio(r):
        return ("-", "-") if r is None else (f"{r[1]:.3f} [{r[2]:.3f}, {r[3]:.3f}]", r[4])

    summary = []
    rows = ["| case | fs | pairs: stock kernel / RFC kernel | stock median / p99 "
            "| module median / p99 | RFC median / p99 | RFC kernel, no deadline: median / p99 "
            "| module / stock [95% CI] | verdict | RFC / stock [95% CI] | verdict | target "
            "| RFC gave up |",
            "| --- |" + " --- |" * 12]
    for case in ("cycle", "busy", "tput_cycle"):
        for fs in sorted({k[2] for k in groups if k[1] == case}):
            u = unit[case]
            mp = {"stock": med_p99("stock", case, fs, "stock"),
                  "module": med_p99("stock", case, fs, "timed"),
                  "rfc_kernel_stock": med_p99("rfc", case, fs, "stock"),
                  "rfc": med_p99("rfc", case, fs, "rfc")}
            rm, rr = ratio("stock", case, fs, "timed"), ratio("rfc", case, fs, "rfc")
            _, how, bound = TARGETS[(case, "timed")]
            tgt = f"{'<=' if how == 'le' else '>='} {bound}"
            n = " / ".join("-" if r is None else str(r[0]) for r in (rm, rr))
            # The RFC's freezes that timed out on every attempt: no samples, counted here.
            gave = parsed["gaveup"].get(("rfc", case, fs, "rfc"), 0) if rr else None
            if gave and case == "tput_cycle":
                # Its writers ran on where the freeze gave up: a flattering ratio.
                rr = rr[:4] + ("no verdict (a freeze gave up)",)
            rows.append(f"| {what[case]} | {fs} | {n} | {show(mp['stock'], u)} "
                        f"| {show(mp['module'], u)} | {show(mp['rfc'], u)} "
                        f"| {show(mp['rfc_kernel_stock'], u)} | "
                        + " | ".join(show_ratio(rm) + show_ratio(rr))
                        + f" | {tgt} | {'-' if gave is None else gave} |")
            summary.append([case, fs, u]
                           + [x for k in ("stock", "module", "rfc_kernel_stock", "rfc")
                              for x in mp[k]]
                           + [x for r in (rm, rr)
                              for x in ((None,) * 5 if r is None else r)]
                           + [tgt, gave])
    if parsed["rfc"]:
        ms, retries = parsed["rfc"]
        rows += ["", f"RFC: plain FIFREEZE on the RFC kernel with fs.freeze_timeout_ms = {ms} "
                 f"and fs.freeze_retries = {retries}; RFC / stock is paired within the RFC "
                 "kernel's VM, against the same kernel's FIFREEZE with freeze_timeout_ms = 0 "
                 "(the stock code path), whose figures are in the column before the ratios. "
                 "RFC gave up: its freezes that timed out on every attempt (ETIMEDOUT, nothing "
                 "frozen), not samples; an idle or busy one was taken again, a throughput "
                 "run's was not (its writers ran on). "
                 "module: the timed freeze (10 s, 1 retry) against stock FIFREEZE in the stock "
                 "kernel's VM."]
    else:
        rows += ["", "RFC: no bench --rfc output (no RFC kernel's VM): its columns are empty."]
    with open(outdir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "fs", "unit", "stock_median", "stock_p99", "module_median",
                    "module_p99", "rfc_kernel_stock_median", "rfc_kernel_stock_p99",
                    "rfc_median", "rfc_p99",
                    "module_pairs", "module_ratio", "module_lo", "module_hi", "module_verdict",
                    "rfc_pairs", "rfc_ratio", "rfc_lo", "rfc_hi", "rfc_verdict", "target",
                    "rfc_gave_up"])
        w.writerows([["" if x is None else f"{x:.4f}".rstrip("0").rstrip(".")
                      if isinstance(x, float) else x for x in r] for r in summary])

    # Every method of each kernel against its baseline.
    rows += ["", "| case | fs | kernel | method | n | median | p90 | p99 "
             "| ratio to baseline [95% CI] | target | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (kernel, case, fs, method), d in sorted(
            groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0] != "stock",
                                       kv[0][3] != base[kv[0][1]], kv[0][3])):
        v = list(d.values())
        u = unit[case]
        cells = f"| {what[case]} | {fs} | {kernel} | {method} | {len(v)} " \
                f"| {statistics.median(v):.1f} {u} " \
                f"| {pct(v, 0.9):.1f} {u} | {pct(v, 0.99):.1f} {u} "
        if method == base[case]:
            rows.append(cells + "| 1 (baseline) | | |")
            continue
        a, b = paired(case, fs, method, base[case], kernel)
        point, lo, hi = ratio_ci(a, b)
        t = TARGETS.get((case, method))
        tgt = vd = ""
        if t:
            tgt = f"{'<=' if t[1] == 'le' else '>='} {t[2]}"
            vd = verdict(lo, hi, t[1], t[2])
        rows.append(cells + f"| {point:.3f} [{lo:.3f}, {hi:.3f}] | {tgt} | {vd} |")

    # The one-grace-period switch against a grace period per level.
    rows += ["", "| one GP for the three reader switches vs one per level | fs | n "
             "| ratio timed / timed_each [95% CI] |", "| --- | --- | --- | --- |"]
    for fs in sorted({k[2] for k in groups if k[:2] == ("stock", "cycle")}):
        a, b = paired("cycle", fs, "timed", "timed_each")
        if a:
            point, lo, hi = ratio_ci(a, b)
            rows.append(f"| freeze of an idle fs | {fs} | {len(a)} | "
                        f"{point:.3f} [{lo:.3f}, {hi:.3f}] |")

    if stops:
        rows += ["", "| sampling | fs | kernel | pairs | seconds | worst CI half width "
                 "| stopped by |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for kernel, case, fs, reps, secs, half, how in stops:
            rows.append(f"| {what[case]} | {fs} | {kernel} | {reps} | {secs} | +-{half:.2f}% | "
                        f"{'target +-2% met' if how == 'met' else 'cap (samples or time)'} |")

    if stages:
        per = {}
        for case, fs, method, rep, frm, to, us in stages:
            name = STAGE_NAMES.get((frm, to), f"{frm} -> {to}")
            per.setdefault((case, fs, method), {}).setdefault(name, {}).setdefault(rep, 0.0)
            per[(case, fs, method)][name][rep] += us
        # Each freeze's stages summed: the whole freeze, begin to end.
        totals = {}
        for case, fs, method, rep, _, _, us in stages:
            t = totals.setdefault((case, fs, method), {})
            t[rep] = t.get(rep, 0.0) + us
        for case, fs in sorted({(c, f) for c, f, _ in per}):
            methods = sorted(m for c, f, m in per if (c, f) == (case, fs))
            names = []
            for m in methods:
                names += [n for n in per[(case, fs, m)] if n not in names]
            ns = {m: len({r for d in per[(case, fs, m)].values() for r in d}) for m in methods}
            rows += ["", f"| where the time goes: {what[case]}, {fs} (median us; n freezes) | "
                     + " | ".join(f"{m} (n={ns[m]})" for m in methods) + " |",
                     "| --- |" + " --- |" * len(methods)]
            for name in names + ["total"]:
                cells = []
                for m in methods:
                    st = per[(case, fs, m)]
                    if name == "total":
                        vals = list(totals[(case, fs, m)].values())
                    elif name in st:
                        # A stage missing in a freeze counts 0 there.
                        vals = list(st[name].values()) + [0.0] * (ns[m] - len(st[name]))
                    else:
                        cells.append("-")
                        continue
                    cells.append(f"{statistics.median(vals):.0f}")
                rows.append(f"| {name} | " + " | ".join(cells) + " |")
            # The same freezes as userspace times the ioctl, and what of it lies outside
            # freeze_super() / the attempts (the ioctl's own work, the syscall).
            if any((case, fs, m) in calls for m in methods):
                whole, outside = [], []
                for m in methods:
                    call = calls.get((case, fs, m), {})
                    tot = totals[(case, fs, m)]
                    reps = sorted(set(call) & set(tot))
                    whole.append(f"{statistics.median(call.values()):.0f}" if call else "-")
                    outside.append(f"{statistics.median(call[r] - tot[r] for r in reps):.0f}"
                                   if reps else "-")
                rows.append("| the whole ioctl, timed by the caller | " + " | ".join(whole)
                            + " |")
                rows.append("| of which outside the freeze (ioctl - total) | "
                            + " | ".join(outside) + " |")
        # Whole freezes of the stage passes (begin to end), against stock and against a
        # grace period per level.
        rows += ["", "| stage passes: whole freeze, ratio [95% CI] | fs | timed / stock "
                 "| timed / timed_each | timed_expedited / stock | whole ioctl: timed / stock |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for case, fs in sorted({(c, f) for c, f, _ in per}):
            tot = {m: t for (c, f, m), t in totals.items() if (c, f) == (case, fs)}
            cells = []
            for m1, m2 in (("timed", "stock"), ("timed", "timed_each"),
                           ("timed_expedited", "stock")):
                reps = sorted(set(tot.get(m1, {})) & set(tot.get(m2, {})))
                if not reps:
                    cells.append("-")
                    continue
                point, lo, hi = ratio_ci([tot[m1][r] for r in reps], [tot[m2][r] for r in reps])
                cells.append(f"{point:.3f} [{lo:.3f}, {hi:.3f}]")
            ct, cs = calls.get((case, fs, "timed"), {}), calls.get((case, fs, "stock"), {})
            reps = sorted(set(ct) & set(cs))
            if reps:
                point, lo, hi = ratio_ci([ct[r] for r in reps], [cs[r] for r in reps])
                cells.append(f"{point:.3f} [{lo:.3f}, {hi:.3f}]")
            else:
                cells.append("-")
            rows.append(f"| {what[case]} | {fs} | " + " | ".join(cells) + " |")
        with open(outdir / "stages.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case", "fs", "method", "rep", "from", "to", "us"])
            w.writerows(stages)

    if vector:
        rows += ["", "| deadlock vector (fsA ext4 and xfs) | fsB | n | median | worst |",
                 "| --- | --- | --- | --- | --- |"]
        for kind in sorted({k for _, k, _, _ in vector}):
            over = [ms - 920 for name, k, att, ms in vector
                    if k == kind and name.startswith("held")]
            ok = [ms for name, k, att, ms in vector if k == kind and name.startswith("timed")]
            if over:
                rows.append(f"| daemon never answers: ETIMEDOUT overshoot past its deadline "
                            f"(3 x 300 ms + 2 x 10 ms) | "
                            f"{kind} | {len(over)} | {statistics.median(over)} ms | "
                            f"{max(over)} ms |")
            if ok:
                rows.append(f"| daemon answers: time to a successful freeze (timeout 1 s) | "
                            f"{kind} | {len(ok)} | {statistics.median(ok)} ms | {max(ok)} ms |")
        rows.append("| stock FIFREEZE | FUSE, EROFS | - | does not return | "
                    "(watchdog 3 s, then rescued) |")
    if parsed["slow"]:
        slow_samples = parsed["slow_samples"]
        with open(outdir / "slow.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["n", "d_ms", "method", "rep", "ms", "calls", "attempts", "blocked_ms"])
            w.writerows(slow_samples)

        def med(n, d, method, i):
            v = [s[i] for s in slow_samples if s[:3] == (n, d, method)]
            return statistics.median(v) if v else float("nan")

        rows += ["", "| slow daemon: N x D | writer's own time | policy | time to freeze "
                 "/ own [95% CI] | goal: 1.2 x own + one timeout | verdict | calls | attempts "
                 "| writers blocked |",
                 "| --- |" + " --- |" * 8]
        for n, d, method, ratio, lo, hi, blocked, goal in parsed["slow"]:
            verdict_ = "met" if hi <= goal else "not met" if lo > goal else "undecided"
            rows.append(f"| {n} x {d} ms | {med(n, d, 'own', 4):.0f} ms | {method} | "
                        f"{ratio:.2f} [{lo:.2f}, {hi:.2f}] | {goal:.2f} | {verdict_} | "
                        f"{med(n, d, method, 5):.0f} | {med(n, d, method, 6):.0f} | "
                        f"{blocked:.0f} ms |")
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
        keys = sorted((k for k in groups if k[1] == case), key=lambda k: (k[2], k[0] != "stock", k[3]))
        ax.boxplot([list(groups[k].values()) for k in keys], showfliers=True)
        ax.set_xticks(range(1, len(keys) + 1))
        ax.set_xticklabels([f"{k[2]}\n{k[3]}" + ("\n(RFC kernel)" if k[0] == "rfc" else "")
                            for k in keys], fontsize=7)
        ax.set_title(what[case], fontsize=9)
        ax.set_ylabel(unit[case])
    fig.suptitle("timed freeze and the RFC's FIFREEZE vs stock FIFREEZE "
                 "(TCG VM: ratios matter, not absolutes)")
    fig.tight_layout()
    fig.savefig(outdir / "plot.png", dpi=90)
    print(f"report: wrote {outdir}/samples.csv, summary.csv, table.md, plot.png")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: report.py STOCK_OUTPUT OUTDIR [RFC_OUTPUT]")
    main(*sys.argv[1:])
