#!/usr/bin/env python3
"""Turns the table `benches/compare_torch.py --out FILE.md` writes into the target summary and
the per-family result tables of docs/BENCHMARKS.md, so the doc is regenerated from one run.

    python3 scripts/bench_report.py /tmp/compare.md > /tmp/report.md
"""
import sys


def rows(path):
    out = []
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 11 or cells[0] in ("op", "---"):
            continue
        op, shape, layout, dtype, _, ours, ours_pct, _, torch, _, ratio = cells
        try:
            out.append(dict(op=op, shape=shape, layout=layout, dtype=dtype, ours=float(ours),
                            pct=float(ours_pct.rstrip("%")), torch=float(torch), ratio=float(ratio.rstrip("x"))))
        except ValueError:
            pass  # n/a rows
    return out


WINDOWED = ("max_pool2d k2 s2", "max_pool2d k3 s2 p1", "avg_pool2d k3 s2 p1", "avg_pool2d k3 s1 p1")


def is_gap(r):
    return r["op"].startswith("gap ")


def is_adaptive(r):
    return r["op"].startswith("adaptive_") and "backward" not in r["op"]


TARGETS = [
    ("f32 GAP, three formulations, both layouts: >= 90% of baseline", lambda r: is_gap(r) and r["dtype"] == "f32", lambda r: r["pct"] >= 90),
    ("f32 GAP: not slower than PyTorch", lambda r: is_gap(r) and r["dtype"] == "f32", lambda r: r["ratio"] >= 1.0),
    ("f16/bf16 GAP: >= 80% of baseline (input bytes)", lambda r: is_gap(r) and r["dtype"] != "f32", lambda r: r["pct"] >= 80),
    ("windowed NCHW: >= 5x PyTorch", lambda r: r["op"] in WINDOWED and r["layout"] == "NCHW", lambda r: r["ratio"] >= 5),
    ("windowed channels-last: >= 2x PyTorch", lambda r: r["op"] in WINDOWED and r["layout"] == "NHWC", lambda r: r["ratio"] >= 2),
    ("max_pool2d_with_indices NCHW: >= 3x PyTorch", lambda r: r["op"].startswith("max_pool2d_with_indices") and r["layout"] == "NCHW", lambda r: r["ratio"] >= 3),
    ("max_pool2d_with_indices channels-last: >= 2x PyTorch", lambda r: r["op"].startswith("max_pool2d_with_indices") and r["layout"] == "NHWC", lambda r: r["ratio"] >= 2),
    ("adaptive: >= 1.2x PyTorch", is_adaptive, lambda r: r["ratio"] >= 1.2),
    ("adaptive: >= 80% of baseline", is_adaptive, lambda r: r["pct"] >= 80),
    ("backward: not slower than PyTorch", lambda r: "backward" in r["op"], lambda r: r["ratio"] >= 1.0),
]

FAMILIES = [
    ("Global average pooling (three formulations)", is_gap),
    ("Windowed max / avg pooling", lambda r: r["op"] in WINDOWED or r["op"].startswith("max_pool2d_with_indices")),
    ("Adaptive pooling", is_adaptive),
    ("Backward", lambda r: "backward" in r["op"]),
]


def main():
    data = rows(sys.argv[1])
    print("| target | met (rows) | median ours/torch | worst row |")
    print("|---|---|---|---|")
    for name, select, ok in TARGETS:
        sel = [r for r in data if select(r)]
        if not sel:
            continue
        met = sum(1 for r in sel if ok(r))
        ratios = sorted(r["ratio"] for r in sel)
        worst = min(sel, key=lambda r: r["ratio"] if "PyTorch" in name else r["pct"])
        status = "**met**" if met == len(sel) else "missed"
        print(f"| {name} | {status}, {met}/{len(sel)} | {ratios[len(ratios) // 2]:.2f}x | "
              f"{worst['op']} {worst['shape']} {worst['layout']} {worst['dtype']}: {worst['ratio']:.2f}x, {worst['pct']:.0f}% |")
    for title, select in FAMILIES:
        print(f"\n### {title}\n")
        print("| op | shape | layout | dtype | ours GB/s | ours % of baseline | torch GB/s | ours/torch |")
        print("|---|---|---|---|---|---|---|---|")
        for r in data:
            if select(r):
                print(f"| {r['op']} | {r['shape']} | {r['layout']} | {r['dtype']} | {r['ours']:.1f} | {r['pct']:.0f}% | {r['torch']:.1f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
