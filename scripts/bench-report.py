#!/usr/bin/env python3
"""Turns the JSON of several runs of taskyard_bench (each with repetitions) into bench/results/results.md
and the data and gnuplot script for chart.png. Within a run, medians of the repetitions; across runs,
the median of each ratio and its range. CPU time is the thread's CPU time."""

import argparse
import json
import os
import statistics
import sys

TOKIO_W2_NS = 1135  # tokio spawn + HashMap<String, JoinHandle> + purge, same machine (the issue)

p = argparse.ArgumentParser()
p.add_argument("outdir")
p.add_argument("json", nargs="+", help="one taskyard_bench JSON output per run")
p.add_argument("--cpu", default="?")
p.add_argument("--cores", default="?")
p.add_argument("--compiler", default="?")
p.add_argument("--boost", default="?")
a = p.parse_args()

runs = []
for path in a.json:
    with open(path) as f:
        runs.append(json.load(f))

NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}


def medians(run):
    out = {}
    for b in run["benchmarks"]:
        if b.get("aggregate_name") == "median":
            out[b["run_name"].split("/")[0]] = b
    return out


def ns_per_task(median, name):
    b = median[name]
    return b["cpu_time"] * NS[b["time_unit"]] / b["tasks_per_iter"]


def rows_of(median):
    """The table's rows for one run: (workload, what, taskyard, baseline, unit, target ratio, target
    text, met or None to compare the ratio with the target ratio)."""
    rows = []

    def have(*names):
        return all(n in median for n in names)

    def ns(name):
        return ns_per_task(median, name)

    def counter(name, key):
        return median[name][key]

    def row(workload, what, ours, theirs, unit, target_ratio, target_text, met=None):
        rows.append((workload, what, ours, theirs, unit, target_ratio, target_text, met))

    if have("BM_W1_taskyard", "BM_W1_co_spawn"):
        row("W1", "add_task unnamed, run to completion vs `co_spawn` detached",
            ns("BM_W1_taskyard"), ns("BM_W1_co_spawn"), "ns/task", 1.15, "≤ 1.15×")
        ours, theirs = counter("BM_W1_taskyard", "allocs_per_task"), counter("BM_W1_co_spawn", "allocs_per_task")
        row("W1", "allocations per add_task vs `co_spawn` detached", ours, theirs, "allocs/task",
            (theirs + 2) / theirs, "≤ co_spawn + 2", met=ours <= theirs + 2 + 0.05)
    if have("BM_W1_taskyard", "BM_W1_co_spawn_signal"):
        ours, theirs = counter("BM_W1_taskyard", "allocs_per_task"), counter("BM_W1_co_spawn_signal", "allocs_per_task")
        row("W1", "allocations per add_task vs `co_spawn` with a bound cancellation signal", ours, theirs,
            "allocs/task", (theirs + 2) / theirs, "≤ co_spawn + 2", met=ours <= theirs + 2 + 0.05)
        row("W1", "add_task unnamed vs `co_spawn` with a bound cancellation signal (information)",
            ns("BM_W1_taskyard"), ns("BM_W1_co_spawn_signal"), "ns/task", None, "—")
    if have("BM_W1_taskyard_strand", "BM_W1_co_spawn"):
        row("W1", "the same with the App's own io_context (a strand per task) (information)",
            ns("BM_W1_taskyard_strand"), ns("BM_W1_co_spawn"), "ns/task", None, "—")
    if have("BM_W2_taskyard", "BM_W2_registry"):
        row("W2", "add_task named + completion + purge vs hand-written registry",
            ns("BM_W2_taskyard"), ns("BM_W2_registry"), "ns/task", 1.0, "≤ 1.0×")
    if have("BM_W3_taskyard", "BM_W3_co_spawn_signal"):
        ours, theirs = counter("BM_W3_taskyard", "live_bytes_per_task"), counter("BM_W3_co_spawn_signal", "live_bytes_per_task")
        row("W3", "heap held per suspended named task vs `co_spawn` + signal", ours, theirs,
            "bytes/task", (theirs + 128) / theirs, "≤ baseline + 128 B", met=ours <= theirs + 128)
        row("W3", "RSS per suspended named task (information)", counter("BM_W3_taskyard", "rss_bytes_per_task"),
            counter("BM_W3_co_spawn_signal", "rss_bytes_per_task"), "bytes/task", None, "—")
        row("W3", "allocations per suspended named task (information)", counter("BM_W3_taskyard", "allocs_per_task"),
            counter("BM_W3_co_spawn_signal", "allocs_per_task"), "allocs/task", None, "—")
    for kind, prefix in (("throwing", "BM_W4"), ("non-throwing", "BM_W4nothrow")):
        if have(f"{prefix}_taskyard", f"{prefix}_registry"):
            row("W4", f"cancel_task of 1,000 suspended tasks ({kind} wait) started at once "
                "(`async_cancel_task`) vs emitting each signal; both until every task has ended",
                ns(f"{prefix}_taskyard"), ns(f"{prefix}_registry"), "ns/task", 1.2, "≤ 1.2×")
    for kind, prefix in (("throwing", "BM_W4"), ("non-throwing", "BM_W4nothrow")):
        if have(f"{prefix}_taskyard_one_by_one", f"{prefix}_registry_one_by_one"):
            row("W4", f"`co_await cancel_task`, one task after another ({kind} wait), vs emitting "
                "the signal, then waiting for the task's end, one after another (information)",
                ns(f"{prefix}_taskyard_one_by_one"), ns(f"{prefix}_registry_one_by_one"), "ns/task",
                None, "—")
    for kind, prefix in (("throwing", "BM_W4"), ("non-throwing", "BM_W4nothrow")):
        if have(f"{prefix}_taskyard_one_by_one", f"{prefix}_registry"):
            row("W4", f"`co_await cancel_task`, one task after another ({kind} wait), vs emitting "
                "every signal at once (information)",
                ns(f"{prefix}_taskyard_one_by_one"), ns(f"{prefix}_registry"), "ns/task", None, "—")
    if have("BM_W5_taskyard", "BM_W5_flat_map"):
        row("W5", "get_task among 1,000,000 names vs `boost::unordered_flat_map` lookup",
            ns("BM_W5_taskyard"), ns("BM_W5_flat_map"), "ns/lookup", 1.1, "≤ 1.1×")
    if have("BM_W6_taskyard", "BM_W6_registry"):
        row("W6", "steady state, 10,000 live named tasks: per add (information)",
            ns("BM_W6_taskyard"), ns("BM_W6_registry"), "ns/add", None, "—")
        row("W6", "steady state: peak heap (information)", counter("BM_W6_taskyard", "peak_heap_mb"),
            counter("BM_W6_registry", "peak_heap_mb"), "MB", None, "—")
        if all("peak_rss_mb" in median[n] for n in ("BM_W6_taskyard", "BM_W6_registry")):
            row("W6", "steady state: peak RSS (information)", counter("BM_W6_taskyard", "peak_rss_mb"),
                counter("BM_W6_registry", "peak_rss_mb"), "MB", None, "—")
    return rows


run_medians = [medians(run) for run in runs]
per_run = [rows_of(m) for m in run_medians]
if any(len(r) != len(per_run[0]) for r in per_run):
    sys.exit("bench-report: the runs do not hold the same benchmarks")

# Each ratio is taken within one run (taskyard and its baseline back to back in one process); the
# table gives, for each row, the median over the runs of that ratio, its range, and the median of
# each side's figure.
rows = []  # (workload, what, taskyard, baseline, unit, ratio, lowest, highest, target, text, met)
for i, first in enumerate(per_run[0]):
    (w, what, _, _, unit, target, ttext, _) = first
    ratios = [r[i][2] / r[i][3] if r[i][3] else float("inf") for r in per_run]
    ratio = statistics.median(ratios)
    ours = statistics.median(r[i][2] for r in per_run)
    theirs = statistics.median(r[i][3] for r in per_run)
    verdicts = [r[i][7] for r in per_run]
    if verdicts[0] is not None:  # a count compared by difference: met in most runs
        met = sum(1 for v in verdicts if v) * 2 > len(verdicts)
    elif target is not None:
        met = ratio <= target
    else:
        met = None
    rows.append((w, what, ours, theirs, unit, ratio, min(ratios), max(ratios), target, ttext, met))


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


ctx = runs[0]["context"]
lines = []
lines.append("| workload | what | taskyard | baseline | unit | ratio | range over runs | target | met |")
lines.append("|---|---|---:|---:|---|---:|---|---|---|")
for (w, what, ours, theirs, unit, ratio, lowest, highest, target, ttext, met) in rows:
    mark = "—" if met is None else ("met" if met else "**missed**")
    lines.append(f"| {w} | {what} | {fmt(ours)} | {fmt(theirs)} | {unit} | {ratio:.2f}× "
                 f"| {lowest:.2f}–{highest:.2f}× | {ttext} | {mark} |")
w2_runs = [ns_per_task(m, "BM_W2_taskyard") for m in run_medians if "BM_W2_taskyard" in m]
if w2_runs:
    w2 = statistics.median(w2_runs)
    lines.append("")
    lines.append(f"Stretch: W2 below tokio's {TOKIO_W2_NS:,} ns/task (spawn + `HashMap<String, JoinHandle>` + purge, "
                 f"measured on this machine, as the issue reports): taskyard {w2:,.0f} ns/task "
                 f"({min(w2_runs):,.0f} to {max(w2_runs):,.0f} over the runs), "
                 + ("**met**." if w2 < TOKIO_W2_NS else "**missed**."))
lines.append("")
loads = "; ".join(", ".join(f"{x:.2f}" for x in run["context"].get("load_avg", [])) for run in runs)
repetitions = runs[0]["benchmarks"][0].get("repetitions", "?")
lines.append(f"Machine: {a.cpu}, {a.cores} cores ({ctx.get('mhz_per_cpu', '?')} MHz); {a.compiler}; "
             f"Boost {a.boost}; {ctx.get('date', '?')}. {len(runs)} runs of the whole suite, one after the other, "
             f"each taking the median of {repetitions} repetitions; each ratio is taken within one run, and the "
             "table gives its median over the runs and its range, and the median of each side's figure. Times "
             "are the benchmark thread's CPU time, so other processes' load counts less than in wall time. "
             f"Load average at the start of each run: {loads}.")

os.makedirs(a.outdir, exist_ok=True)
with open(os.path.join(a.outdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")

# The chart: ratios (bars) and targets (a line over each bar that has one).
with open(os.path.join(a.outdir, "chart.dat"), "w") as f:
    f.write("# label ratio target lowest highest\n")
    for (w, what, ours, theirs, unit, ratio, lowest, highest, target, ttext, met) in rows:
        label = f"{w} {unit}"
        if "strand per task" in what:
            label = "W1 strand"
        elif "bound cancellation signal" in what:
            label = f"W1 {unit} vs +signal"
        elif "one task after another" in what:
            label = "W4 " + ("nothrow " if "non-throwing" in what else "") + "1by1 vs " + (
                "1by1" if "then waiting" in what else "at once")
        elif "non-throwing" in what:
            label = f"{w} nothrow"
        elif "RSS" in what:
            label = f"{w} RSS"
        elif "peak heap" in what:
            label = f"{w} heap"
        f.write(f"\"{label}\" {ratio:.6f} {target if target is not None else 'NaN'} {lowest:.6f} {highest:.6f}\n")
with open(os.path.join(a.outdir, "chart.gp"), "w") as f:
    f.write("""set terminal pngcairo size 1100,560 noenhanced font ',10'
set bmargin 7
set output 'chart.png'
set title 'taskyard / hand-written Asio baseline: median over runs, whiskers the range (lower is better; red: target)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set ylabel 'ratio'
set xtics rotate by -30
set grid ytics
set key off
plot 'chart.dat' using 0:2:xtic(1) with boxes lc rgb '#4477aa', \\
     '' using 0:2:4:5 with yerrorbars pt 0 lc rgb 'black', \\
     '' using 0:5:(sprintf('%.2f', $2)) with labels offset 0,0.7, \\
     '' using 0:3:(0.35) with xerrorbars pt 0 lw 3 lc rgb '#cc3311', \\
     1 with lines dt 2 lc rgb 'black'
""")
print("\n".join(lines))
