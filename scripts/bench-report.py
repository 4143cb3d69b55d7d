#!/usr/bin/env python3
"""Turns taskyard_bench's JSON (run with repetitions) into bench/results/results.md and the data and
gnuplot script for chart.png. Medians of the repetitions; CPU time is the thread's CPU time."""

import argparse
import json
import os
import sys

TOKIO_W2_NS = 1135  # tokio spawn + HashMap<String, JoinHandle> + purge, same machine (the issue)

p = argparse.ArgumentParser()
p.add_argument("json")
p.add_argument("outdir")
p.add_argument("--cpu", default="?")
p.add_argument("--cores", default="?")
p.add_argument("--compiler", default="?")
p.add_argument("--boost", default="?")
a = p.parse_args()

with open(a.json) as f:
    data = json.load(f)

median = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"].split("/")[0]
    median[name] = b

NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}


def ns_per_task(name):
    b = median[name]
    return b["cpu_time"] * NS[b["time_unit"]] / b["tasks_per_iter"]


def counter(name, key):
    return median[name][key]


rows = []  # (workload, what, taskyard, baseline, unit, ratio, target ratio, target text)


def row(workload, what, ours, theirs, unit, target_ratio, target_text, met=None):
    ratio = ours / theirs if theirs else float("inf")
    if met is None and target_ratio is not None:
        met = ratio <= target_ratio
    rows.append((workload, what, ours, theirs, unit, ratio, target_ratio, target_text, met))


def have(*names):
    return all(n in median for n in names)


if have("BM_W1_taskyard", "BM_W1_co_spawn"):
    row("W1", "add_task unnamed, run to completion vs `co_spawn` detached",
        ns_per_task("BM_W1_taskyard"), ns_per_task("BM_W1_co_spawn"), "ns/task", 1.15, "≤ 1.15×")
    ours, theirs = counter("BM_W1_taskyard", "allocs_per_task"), counter("BM_W1_co_spawn", "allocs_per_task")
    row("W1", "allocations per add_task vs `co_spawn` detached", ours, theirs, "allocs/task",
        (theirs + 2) / theirs, "≤ co_spawn + 2", met=ours <= theirs + 2 + 0.05)
if have("BM_W1_taskyard", "BM_W1_co_spawn_signal"):
    ours, theirs = counter("BM_W1_taskyard", "allocs_per_task"), counter("BM_W1_co_spawn_signal", "allocs_per_task")
    row("W1", "allocations per add_task vs `co_spawn` with a bound cancellation signal", ours, theirs,
        "allocs/task", (theirs + 2) / theirs, "≤ co_spawn + 2", met=ours <= theirs + 2 + 0.05)
    row("W1", "add_task unnamed vs `co_spawn` with a bound cancellation signal (information)",
        ns_per_task("BM_W1_taskyard"), ns_per_task("BM_W1_co_spawn_signal"), "ns/task", None, "—")
if have("BM_W1_taskyard_strand", "BM_W1_co_spawn"):
    row("W1", "the same with the App's own io_context (a strand per task) (information)",
        ns_per_task("BM_W1_taskyard_strand"), ns_per_task("BM_W1_co_spawn"), "ns/task", None, "—")
if have("BM_W2_taskyard", "BM_W2_registry"):
    row("W2", "add_task named + completion + purge vs hand-written registry",
        ns_per_task("BM_W2_taskyard"), ns_per_task("BM_W2_registry"), "ns/task", 1.0, "≤ 1.0×")
if have("BM_W3_taskyard", "BM_W3_co_spawn_signal"):
    ours, theirs = counter("BM_W3_taskyard", "live_bytes_per_task"), counter("BM_W3_co_spawn_signal", "live_bytes_per_task")
    row("W3", "heap held per suspended named task vs `co_spawn` + signal", ours, theirs,
        "bytes/task", (theirs + 128) / theirs, "≤ baseline + 128 B", met=ours <= theirs + 128)
    row("W3", "RSS per suspended named task (information)", counter("BM_W3_taskyard", "rss_bytes_per_task"),
        counter("BM_W3_co_spawn_signal", "rss_bytes_per_task"), "bytes/task", None, "—")
    row("W3", "allocations per suspended named task (information)", counter("BM_W3_taskyard", "allocs_per_task"),
        counter("BM_W3_co_spawn_signal", "allocs_per_task"), "allocs/task", None, "—")
if have("BM_W4_taskyard", "BM_W4_registry"):
    row("W4", "cancel_task of a suspended task (throwing wait) vs emitting its signal",
        ns_per_task("BM_W4_taskyard"), ns_per_task("BM_W4_registry"), "ns/task", 1.2, "≤ 1.2×")
if have("BM_W4nothrow_taskyard", "BM_W4nothrow_registry"):
    row("W4", "cancel_task of a suspended task (non-throwing wait) vs emitting its signal",
        ns_per_task("BM_W4nothrow_taskyard"), ns_per_task("BM_W4nothrow_registry"), "ns/task", 1.2, "≤ 1.2×")
if have("BM_W5_taskyard", "BM_W5_flat_map"):
    row("W5", "get_task among 1,000,000 names vs `boost::unordered_flat_map` lookup",
        ns_per_task("BM_W5_taskyard"), ns_per_task("BM_W5_flat_map"), "ns/lookup", 1.1, "≤ 1.1×")
if have("BM_W6_taskyard", "BM_W6_registry"):
    row("W6", "steady state, 10,000 live named tasks: per add (information)",
        ns_per_task("BM_W6_taskyard"), ns_per_task("BM_W6_registry"), "ns/add", None, "—")
    row("W6", "steady state: peak heap (information)", counter("BM_W6_taskyard", "peak_heap_mb"),
        counter("BM_W6_registry", "peak_heap_mb"), "MB", None, "—")


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


ctx = data["context"]
lines = []
lines.append("| workload | what | taskyard | baseline | unit | ratio | target | met |")
lines.append("|---|---|---:|---:|---|---:|---|---|")
for (w, what, ours, theirs, unit, ratio, target, ttext, met) in rows:
    mark = "—" if met is None else ("met" if met else "**missed**")
    lines.append(f"| {w} | {what} | {fmt(ours)} | {fmt(theirs)} | {unit} | {ratio:.2f}× | {ttext} | {mark} |")
if have("BM_W2_taskyard"):
    w2 = ns_per_task("BM_W2_taskyard")
    lines.append("")
    lines.append(f"Stretch: W2 below tokio's {TOKIO_W2_NS:,} ns/task (spawn + `HashMap<String, JoinHandle>` + purge, "
                 f"measured on this machine, as the issue reports): taskyard {w2:,.0f} ns/task, "
                 + ("**met**." if w2 < TOKIO_W2_NS else "**missed**."))
lines.append("")
load = ", ".join(f"{x:.2f}" for x in ctx.get("load_avg", []))
lines.append(f"Machine: {a.cpu}, {a.cores} cores ({ctx.get('mhz_per_cpu', '?')} MHz) "
             f"(load average at the start of the run: {load}); {a.compiler}; Boost {a.boost}; {ctx.get('date', '?')}. "
             "Medians of 5 repetitions; times are the benchmark thread's CPU time, so other processes' load "
             "counts less than in wall time, and each ratio is taken in one run.")

os.makedirs(a.outdir, exist_ok=True)
with open(os.path.join(a.outdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")

# The chart: ratios (bars) and targets (a line over each bar that has one).
with open(os.path.join(a.outdir, "chart.dat"), "w") as f:
    f.write("# label ratio target\n")
    for (w, what, ours, theirs, unit, ratio, target, ttext, met) in rows:
        label = f"{w} {unit}"
        if "strand per task" in what:
            label = "W1 strand"
        elif "bound cancellation signal" in what:
            label = f"W1 {unit} vs +signal"
        elif "non-throwing" in what:
            label = f"{w} nothrow"
        elif "RSS" in what:
            label = "W3 RSS"
        f.write(f"\"{label}\" {ratio:.4f} {target if target is not None else 'NaN'}\n")
with open(os.path.join(a.outdir, "chart.gp"), "w") as f:
    f.write("""set terminal pngcairo size 1100,560 noenhanced font ',10'
set bmargin 7
set output 'chart.png'
set title 'taskyard / hand-written Asio baseline (lower is better; red: target)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set ylabel 'ratio'
set xtics rotate by -30
set grid ytics
set key off
plot 'chart.dat' using 0:2:xtic(1) with boxes lc rgb '#4477aa', \\
     '' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,0.7, \\
     '' using 0:3:(0.35) with xerrorbars pt 0 lw 3 lc rgb '#cc3311', \\
     1 with lines dt 2 lc rgb 'black'
""")
print("\n".join(lines))
