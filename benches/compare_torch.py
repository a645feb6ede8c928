#!/usr/bin/env python3
"""Times PyTorch's pooling ops over cupool's bench suite (same ops, shapes and order as
`cupool bench`, src/bench.rs) and, given our `--json`, prints a markdown table with our GB/s,
torch's GB/s and the ours/torch speed ratio side by side.

    cupool bench --device cpu --json ours.json
    python benches/compare_torch.py --device cpu --json ours.json --out compare.md

GB/s counts bytes read + bytes written with the same formula as src/bench.rs, so the two
columns are comparable. Progress goes to stderr, the table to stdout (and --out).

On a shared machine whose bandwidth drifts over minutes, a ratio of two runs made minutes
apart measures the drift as much as the kernels. `--interleave` runs our side too, one op and
shape at a time, each just before or just after torch's rows of the same op and shape (the
order alternates), and each `cupool bench` call measures its own baseline, so every ratio and
"% of baseline" compares numbers taken seconds apart:

    python benches/compare_torch.py --device cpu --quick --interleave target/release/cupool \
        --json ours.json --out compare.md

With --interleave, --json names the file our merged rows are written to.

Seconds apart is still too far on a machine whose speed swings by 2x within seconds. `--pair`
alternates at the sample level: it starts `cupool bench --serve` once and, for every row, runs
short rounds (about --row-seconds / 8 each) that alternate between torch's calls and ours, the
first round's side alternating from row to row; each side's median is over all its rounds'
samples (at least one a round). Both sides make one untimed call at the start of each round,
which wakes the thread pool the other side left idle, unless one call outlasts the round. The
baseline is measured before each (shape, dtype) group; on the CPU each of our rounds is also
followed by one streaming read of 256 MiB (the baseline's sum, once), and a row's "% of
baseline" uses the median of its rows' reads:

    python benches/compare_torch.py --device cpu --quick --pair target/release/cupool \
        --json ours.json --out compare.md
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

# name, (N, C, H, W), adaptive_only: must match SUITE in src/bench.rs.
SUITE = [
    ("seed", (256, 96, 128, 128), False),
    ("resnet_tail", (128, 2048, 7, 7), False),
    ("effnet_tail", (64, 1280, 7, 7), False),
    ("early_map", (32, 64, 112, 112), False),
    ("long_rows", (4, 8, 512, 512), False),
    ("batch1", (1, 2048, 7, 7), False),
    ("mid_map", (32, 256, 56, 56), True),
]

# Must match OPS / Op::name in src/bench.rs (same order).
OPS = [
    "gap avg_pool2d(HxW)",
    "gap adaptive_avg_pool2d(1,1)",
    "gap mean(-2,-1)",
    "max_pool2d k2 s2",
    "max_pool2d k3 s2 p1",
    "max_pool2d_with_indices k3 s2 p1",
    "avg_pool2d k3 s2 p1",
    "avg_pool2d k3 s1 p1",
    "adaptive_avg_pool2d 7x7",
    "adaptive_avg_pool2d 2x2",
    "adaptive_max_pool2d 7x7",
    "avg_pool2d_backward k3 s2 p1",
    "max_pool2d_backward k3 s2 p1",
    "adaptive_avg_pool2d_backward 7x7",
    "mean_backward(-2,-1)",
]

DTYPES = [("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16), ("f64", torch.float64)]


def applies(op, shape_name, dims, adaptive_only):
    if op in ("adaptive_avg_pool2d 7x7", "adaptive_max_pool2d 7x7", "adaptive_avg_pool2d_backward 7x7"):
        return shape_name in ("early_map", "mid_map")
    if op == "adaptive_avg_pool2d 2x2":
        return not adaptive_only and dims[2] == 7 and dims[3] == 7
    return not adaptive_only


def nbytes(t):
    return t.numel() * t.element_size()


def prepare(op, x):
    """Returns (callable, bytes one call moves); backward inputs are made here, untimed."""
    n, c, h, w = x.shape
    channels_last = not x.is_contiguous()
    inb = nbytes(x)
    es = x.element_size()
    if op == "gap avg_pool2d(HxW)":
        return (lambda: F.avg_pool2d(x, (h, w))), inb + n * c * es
    if op == "gap adaptive_avg_pool2d(1,1)":
        return (lambda: F.adaptive_avg_pool2d(x, (1, 1))), inb + n * c * es
    if op == "gap mean(-2,-1)":
        if channels_last:  # a channels-last tensor cannot be viewed as (N, C, H*W)
            return (lambda: x.mean((-2, -1))), inb + n * c * es
        return (lambda: x.view(n, c, -1).mean(2)), inb + n * c * es
    if op == "max_pool2d k2 s2":
        return (lambda: F.max_pool2d(x, 2, 2)), inb + n * c * (h // 2) * (w // 2) * es
    half = n * c * ((h + 1) // 2) * ((w + 1) // 2)
    if op == "max_pool2d k3 s2 p1":
        return (lambda: F.max_pool2d(x, 3, 2, 1)), inb + half * es
    if op == "max_pool2d_with_indices k3 s2 p1":
        return (lambda: F.max_pool2d(x, 3, 2, 1, return_indices=True)), inb + half * (es + 8)
    if op == "avg_pool2d k3 s2 p1":
        return (lambda: F.avg_pool2d(x, 3, 2, 1)), inb + half * es
    if op == "avg_pool2d k3 s1 p1":
        return (lambda: F.avg_pool2d(x, 3, 1, 1)), inb + n * c * h * w * es
    if op == "adaptive_avg_pool2d 7x7":
        return (lambda: F.adaptive_avg_pool2d(x, (7, 7))), inb + n * c * 49 * es
    if op == "adaptive_avg_pool2d 2x2":
        return (lambda: F.adaptive_avg_pool2d(x, (2, 2))), inb + n * c * 4 * es
    if op == "adaptive_max_pool2d 7x7":
        return (lambda: F.adaptive_max_pool2d(x, (7, 7))), inb + n * c * 49 * es
    # Backward: the ATen backward kernels directly (what autograd calls), without graph overhead.
    if op == "avg_pool2d_backward k3 s2 p1":
        g = F.avg_pool2d(x, 3, 2, 1)
        return (
            lambda: torch.ops.aten.avg_pool2d_backward(g, x, [3, 3], [2, 2], [1, 1], False, True, None)
        ), nbytes(g) + inb
    if op == "max_pool2d_backward k3 s2 p1":
        g, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        return (
            lambda: torch.ops.aten.max_pool2d_with_indices_backward(g, x, [3, 3], [2, 2], [1, 1], [1, 1], False, idx)
        ), nbytes(g) + nbytes(idx) + inb
    if op == "adaptive_avg_pool2d_backward 7x7":
        g = F.adaptive_avg_pool2d(x, (7, 7))
        return (lambda: torch.ops.aten._adaptive_avg_pool2d_backward(g, x)), nbytes(g) + inb
    if op == "mean_backward(-2,-1)":
        g = x.mean((-2, -1))
        hw = h * w

        # Autograd's mean backward: grad expanded over the reduced dims, divided by their size,
        # materialised in x's layout.
        def mean_backward():
            out = torch.empty_like(x)
            torch.div(g[:, :, None, None].expand(x.shape), hw, out=out)
            return out

        return mean_backward, nbytes(g) + inb
    raise ValueError(op)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_op(fn, device, quick, row_seconds):
    """Median seconds per call; one warm-up call sizes the repetitions (same rule as ours)."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = max(time.perf_counter() - t0, 1e-7)
    if device == "cuda":
        # As src/bench.rs: untimed calls for 20 ms, so clocks that dropped while the input was
        # made are back up.
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.02:
            fn()
            sync(device)
    hi = 200 if quick else 400
    reps = min(max(round(row_seconds / first), 5), hi)
    per_sample = calls_per_sample(first, device)
    samples = [sample(fn, device, per_sample) for _ in range(reps)]
    return statistics.median(samples), reps


def calls_per_sample(first, device):
    """One call a sample on the CPU; on a GPU enough to last about a millisecond (as ours)."""
    return min(max(int(-(-1e-3 // first)), 1), 100) if device == "cuda" else 1


def sample(fn, device, per_sample):
    """Seconds per call of one sample of `per_sample` calls; the outputs are freed untimed."""
    outs = []
    t0 = time.perf_counter()
    for _ in range(per_sample):
        outs.append(fn())
    sync(device)
    elapsed = time.perf_counter() - t0
    del outs
    return elapsed / per_sample


def make_input(dims, dtype, device):
    g = torch.Generator().manual_seed(42)
    x = torch.rand(dims, generator=g, dtype=torch.float32) * 2 - 1
    return x.to(dtype).to(device)


def default_dtype_runs(op, dtype_name):
    """Op::runs_in in src/bench.rs: f32 and bf16 run every op, f16 the GAP formulations."""
    return dtype_name in ("f32", "bf16") or (dtype_name == "f16" and op.startswith("gap "))


def suite_shapes(only_shapes, quick):
    """The suite's (name, dims, adaptive_only) in order, `only_shapes` (a set, or None for all);
    `quick` divides the batch by 8 (at least 1), as `cupool bench --quick`."""
    for shape_name, dims, adaptive_only in SUITE:
        if only_shapes and shape_name not in only_shapes:
            continue
        if quick:
            dims = (max(dims[0] // 8, 1),) + dims[1:]
        yield shape_name, dims, adaptive_only


def run_torch(device, quick, row_seconds, only_shapes=None, wanted=None, dtypes=None, only_op=None):
    """`wanted`: the row keys of our JSON (run exactly those); else `dtypes` (every op in
    those types), else the default set. `only_op`: this op's rows only."""
    rows = []
    for shape_name, dims, adaptive_only in suite_shapes(only_shapes, quick):
        for dtype_name, dtype in DTYPES:

            def runs(op, layout):
                if only_op is not None and op != only_op:
                    return False
                if wanted is not None:
                    return (op, tuple(dims), layout, dtype_name) in wanted
                if dtypes is not None:
                    return dtype_name in dtypes
                return default_dtype_runs(op, dtype_name)

            if not any(runs(op, layout) and applies(op, shape_name, dims, adaptive_only) for op in OPS for layout in ("NCHW", "NHWC")):
                continue
            print(f"preparing {shape_name} {dims} {dtype_name}", file=sys.stderr)
            nchw = make_input(dims, dtype, device)
            nhwc = nchw.contiguous(memory_format=torch.channels_last)
            for layout, x in (("NCHW", nchw), ("NHWC", nhwc)):
                for op in OPS:
                    if not (applies(op, shape_name, dims, adaptive_only) and runs(op, layout)):
                        continue
                    row = dict(op=op, shape_name=shape_name, shape=list(dims), layout=layout, dtype=dtype_name)
                    try:
                        fn, b = prepare(op, x)
                        t, reps = time_op(fn, device, quick, row_seconds)
                        row.update(median_ms=t * 1e3, gbps=b / t / 1e9, bytes=b, reps=reps, status="ok")
                        print(f"  {op:<34} {layout} {dtype_name:<4} {t * 1e3:10.3f} ms {b / t / 1e9:7.1f} GB/s", file=sys.stderr)
                    except (RuntimeError, MemoryError) as e:
                        row.update(median_ms=None, gbps=None, bytes=None, reps=None, status=f"n/a: {str(e).splitlines()[0][:100]}")
                        print(f"  {op:<34} {layout} {dtype_name:<4} {row['status']}", file=sys.stderr)
                    rows.append(row)
            del nchw, nhwc
    return rows


def key(r):
    return (r["op"], tuple(r["shape"]), r["layout"], r["dtype"])


def fmt_ms(ms):
    if ms is None:
        return "n/a"
    if ms >= 1000:
        return f"{ms / 1e3:.3f} s"
    if ms >= 1:
        return f"{ms:.3f} ms"
    return f"{ms * 1e3:.1f} µs"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(torch_rows, ours, device):
    lines = []
    lines.append(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    if ours is not None:
        b = ours.get("baseline", {})
        if ours.get("paired"):
            lines.append(f"ours: {ours.get('device')}, paired with torch sample by sample ({ours.get('rounds')} alternating rounds per row); "
                         f"baseline: {b.get('what')}, measured before each shape and dtype: {fmt(b.get('min_gbps'), '.1f')} to "
                         f"{fmt(b.get('max_gbps'), '.1f')} GB/s, median {fmt(b.get('gbps'), '.1f')}; % of baseline uses the row's own: "
                         f"on the CPU the median of a 256 MiB read after each of our rounds ({fmt(b.get('row_min_gbps'), '.1f')} to "
                         f"{fmt(b.get('row_max_gbps'), '.1f')} GB/s over the rows)")
        elif ours.get("interleaved"):
            lines.append(f"ours: {ours.get('device')}, interleaved with torch per op and shape; baseline: {b.get('what')}, "
                         f"measured before each op and shape: {fmt(b.get('min_gbps'), '.1f')} to {fmt(b.get('max_gbps'), '.1f')} GB/s, "
                         f"median {fmt(b.get('gbps'), '.1f')}; % of baseline uses the row's own")
        else:
            lines.append(f"ours: {ours.get('device')}; baseline: {b.get('what')} = {fmt(b.get('gbps'), '.1f')} GB/s")
        base = b.get("gbps")
        ours_by_key = {key(r): r for r in ours["rows"]}
        lines.append("")
        lines.append("| op | shape | layout | dtype | ours | ours GB/s | ours % of baseline | torch | torch GB/s | torch % of baseline | ours/torch speed |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        base = None
        ours_by_key = None
        lines.append("")
        lines.append("| op | shape | layout | dtype | torch | torch GB/s |")
        lines.append("|---|---|---|---|---|---|")
    for r in torch_rows:
        shape = f"{r['shape_name']} {'x'.join(map(str, r['shape']))}"
        head = f"| {r['op']} | {shape} | {r['layout']} | {r['dtype']} "
        t_ms, t_gbps = r.get("median_ms"), r.get("gbps")
        if ours_by_key is None:
            lines.append(head + f"| {fmt_ms(t_ms)} | {fmt(t_gbps, '.1f')} |")
            continue
        o = ours_by_key.get(key(r), {})
        o_ms, o_gbps = o.get("median_ms"), o.get("gbps")
        o_cell = fmt_ms(o_ms) if o_ms is not None else (o.get("status") or "missing")
        row_base = o.get("baseline_gbps") or base  # --interleave, --pair: the row's own baseline
        o_pct = None if (o_gbps is None or not row_base) else 100 * o_gbps / row_base
        t_pct = None if (t_gbps is None or not row_base) else 100 * t_gbps / row_base
        ratio = None if (o_ms is None or t_ms is None) else t_ms / o_ms
        lines.append(
            head
            + f"| {o_cell} | {fmt(o_gbps, '.1f')} | {fmt(o_pct, '.0f')}{'%' if o_pct is not None else ''} "
            + f"| {fmt_ms(t_ms)} | {fmt(t_gbps, '.1f')} | {fmt(t_pct, '.0f')}{'%' if t_pct is not None else ''} "
            + f"| {fmt(ratio, '.2f')}{'x' if ratio is not None else ''} |"
        )
    return "\n".join(lines) + "\n"


def run_interleaved(cupool, device, quick, row_seconds, only_shapes, dtypes):
    """Our rows and torch's, one (shape, op) group at a time, in the suite's order; the group's
    first runner alternates so neither side always goes first. Returns (torch rows, our JSON)."""
    torch_rows, our_rows, baselines, meta = [], [], [], {}
    turn = 0
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "group.json")
        for shape_name, _, _ in SUITE:
            if only_shapes and shape_name not in only_shapes:
                continue
            for op in OPS:
                cmd = [cupool, "bench", "--device", device, "--shapes", shape_name, "--ops", op, "--json", out_json]
                if quick:
                    cmd.append("--quick")
                if dtypes:
                    cmd += ["--dtypes", ",".join(sorted(dtypes))]
                cmd += ["--row-seconds", str(row_seconds)]

                def ours_group():
                    if os.path.exists(out_json):
                        os.remove(out_json)
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                    with open(out_json) as f:
                        got = json.load(f)
                    # --ops matches substrings: keep this op's rows only.
                    rows = [r for r in got["rows"] if r["op"] == op]
                    for r in rows:
                        r["baseline_gbps"] = got["baseline"]["gbps"]
                    return got, rows

                got = rows = None
                ours_first = turn % 2 == 0
                if ours_first:
                    got, rows = ours_group()
                    if not rows:
                        continue  # the op does not apply to this shape
                wanted = {key(r) for r in rows} if rows is not None else None
                if wanted is None:
                    # torch first: run the rows cupool would run (same rule as without --json)
                    t_rows = run_torch(device, quick, row_seconds, {shape_name}, None, dtypes, only_op=op)
                    if not t_rows:
                        continue
                    got, rows = ours_group()
                    by_key = {key(r) for r in rows}
                    t_rows = [r for r in t_rows if key(r) in by_key]
                else:
                    t_rows = run_torch(device, quick, row_seconds, {shape_name}, wanted, dtypes, only_op=op)
                turn += 1
                torch_rows += t_rows
                our_rows += rows
                baselines.append(got["baseline"]["gbps"])
                meta = {k: got[k] for k in ("device", "quick", "threads") if k in got}
                meta["baseline_what"] = got["baseline"]["what"]
    ours = dict(meta)
    ours.pop("baseline_what", None)
    ours.update(
        interleaved=True,
        baseline=dict(
            what=meta.get("baseline_what"),
            gbps=statistics.median(baselines) if baselines else None,
            min_gbps=min(baselines, default=None),
            max_gbps=max(baselines, default=None),
        ),
        rows=our_rows,
    )
    return torch_rows, ours


PAIR_ROUNDS = 8


def torch_round(fn, device, seconds, per_sample, first):
    """One round of torch samples (seconds per call): an untimed call unless one call (`first`
    seconds) outlasts the round, then samples for about `seconds`, at least one (as `bench
    --serve` does for ours)."""
    if first < seconds:
        fn()
        sync(device)
    samples = []
    start = time.perf_counter()
    while not samples or time.perf_counter() - start < seconds:
        samples.append(sample(fn, device, per_sample))
    return samples


def run_paired(cupool, device, quick, row_seconds, only_shapes, dtypes):
    """Every row timed in PAIR_ROUNDS alternating rounds of torch's calls and ours (through
    `cupool bench --serve`). Returns (torch rows, our JSON)."""
    cmd = [cupool, "bench", "--serve", "--device", device] + (["--quick"] if quick else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(request):
        proc.stdin.write(request + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            sys.exit(f"{cupool} bench --serve exited (request {request!r})")
        return json.loads(line)

    torch_rows, our_rows, baselines, row_baselines = [], [], [], []
    base_what = None
    per_round = row_seconds / PAIR_ROUNDS
    turn = 0
    try:
        for shape_name, dims, adaptive_only in suite_shapes(only_shapes, quick):
            for dtype_name, dtype in DTYPES:

                def runs(op):
                    return applies(op, shape_name, dims, adaptive_only) and (
                        dtype_name in dtypes if dtypes is not None else default_dtype_runs(op, dtype_name))

                if not any(runs(op) for op in OPS):
                    continue
                base = ask("baseline")
                base_what = base.get("what")
                if base.get("gbps"):
                    baselines.append(base["gbps"])
                print(f"preparing {shape_name} {dims} {dtype_name} (baseline {fmt(base.get('gbps'), '.1f')} GB/s)", file=sys.stderr)
                nchw = make_input(dims, dtype, device)
                nhwc = nchw.contiguous(memory_format=torch.channels_last)
                for layout, x in (("NCHW", nchw), ("NHWC", nhwc)):
                    for op in OPS:
                        if not runs(op):
                            continue
                        common = dict(op=op, shape_name=shape_name, shape=list(dims), layout=layout, dtype=dtype_name)
                        t_row, o_row = dict(common), dict(common, baseline_gbps=base.get("gbps"))
                        try:
                            fn, t_bytes = prepare(op, x)
                            t0 = time.perf_counter()
                            fn()
                            sync(device)
                            first = max(time.perf_counter() - t0, 1e-7)
                            per_sample = calls_per_sample(first, device)
                            t_samples, o_samples, o_bytes, o_status, reads = [], [], None, "ok", []
                            request = "\t".join(["time", shape_name, op, layout, dtype_name, f"{per_round:.6f}"])
                            for r in range(PAIR_ROUNDS):
                                for side in (("torch", "ours") if (r + turn) % 2 == 0 else ("ours", "torch")):
                                    if side == "torch":
                                        t_samples += torch_round(fn, device, per_round, per_sample, first)
                                    elif o_status == "ok":
                                        got = ask(request)
                                        o_status = got["status"]
                                        if o_status == "ok":
                                            o_samples += got["samples"]
                                            o_bytes = got["bytes"]
                                            read = ask("read").get("gbps")
                                            if read:
                                                reads.append(read)
                            turn += 1
                            t = statistics.median(t_samples)
                            t_row.update(median_ms=t * 1e3, gbps=t_bytes / t / 1e9, bytes=t_bytes, reps=len(t_samples), status="ok")
                            # The row's baseline: the reads sampled after each of our rounds
                            # (CPU), else the group's.
                            row_base = statistics.median(reads) if reads else base.get("gbps")
                            o_row["baseline_gbps"] = row_base
                            if row_base:
                                row_baselines.append(row_base)
                            if o_status == "ok":
                                o = statistics.median(o_samples)
                                o_gbps = o_bytes / o / 1e9
                                pct = 100 * o_gbps / row_base if row_base else None
                                o_row.update(median_ms=o * 1e3, gbps=o_gbps, pct_of_baseline=pct, bytes=o_bytes, reps=len(o_samples), status="ok")
                            else:
                                o_row.update(median_ms=None, gbps=None, pct_of_baseline=None, bytes=None, reps=None, status=o_status)
                            print(f"  {op:<34} {layout} {dtype_name:<4} torch {t * 1e3:9.3f} ms, ours "
                                  f"{fmt_ms(o_row['median_ms'])} ({o_status}; {len(t_samples)}/{len(o_samples)} samples)", file=sys.stderr)
                        except (RuntimeError, MemoryError) as e:
                            t_row.update(median_ms=None, gbps=None, bytes=None, reps=None, status=f"n/a: {str(e).splitlines()[0][:100]}")
                            o_row.update(median_ms=None, gbps=None, pct_of_baseline=None, bytes=None, reps=None, status="not run: torch failed")
                            print(f"  {op:<34} {layout} {dtype_name:<4} {t_row['status']}", file=sys.stderr)
                        torch_rows.append(t_row)
                        our_rows.append(o_row)
                del nchw, nhwc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait()
    ours = dict(
        device=device,
        quick=quick,
        paired=True,
        rounds=PAIR_ROUNDS,
        baseline=dict(
            what=base_what,
            gbps=statistics.median(baselines) if baselines else None,
            min_gbps=min(baselines, default=None),
            max_gbps=max(baselines, default=None),
            row_min_gbps=min(row_baselines, default=None),
            row_max_gbps=max(row_baselines, default=None),
        ),
        rows=our_rows,
    )
    return torch_rows, ours


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="batch / 8 and fewer repetitions (as cupool bench --quick)")
    ap.add_argument("--json", metavar="OURS.json", help="cupool bench --json output to compare against")
    ap.add_argument("--shapes", metavar="NAME,...", help="only these suite shapes (seed, resnet_tail, effnet_tail, early_map, long_rows, batch1, mid_map)")
    ap.add_argument("--dtypes", metavar="f32,bf16,f16,f64", help="without --json: run every op in these types (default: as cupool bench)")
    ap.add_argument("--row-seconds", type=float, metavar="S", help="about how long each row's timed calls take (default 0.8, 0.25 with --quick; as cupool bench)")
    ap.add_argument("--interleave", metavar="CUPOOL", help="run this cupool executable's bench per op and shape, alternating with torch's rows (see above); --json is then where our rows are written")
    ap.add_argument("--pair", metavar="CUPOOL", help="time every row in alternating short rounds of torch's calls and this cupool executable's (bench --serve; see above); --json is then where our rows are written")
    ap.add_argument("--torch-json", metavar="FILE", help="also write torch's rows as JSON")
    ap.add_argument("--out", metavar="FILE.md", help="also write the table here")
    args = ap.parse_args()

    ours = None
    if args.interleave and args.pair:
        sys.exit("--interleave and --pair are two ways of running both sides: pick one")
    if args.json and not args.interleave and not args.pair:
        with open(args.json) as f:
            ours = json.load(f)
        if ours.get("quick") and not args.quick:
            print("note: our JSON is from a --quick run; using --quick shapes", file=sys.stderr)
            args.quick = True
        elif not ours.get("quick") and args.quick:
            print("warning: our JSON is a full run but --quick was given; shapes will not match", file=sys.stderr)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch.cuda is not available here")

    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads", file=sys.stderr)
    only = set(args.shapes.split(",")) if args.shapes else None
    if only and not only <= {name for name, _, _ in SUITE}:
        sys.exit(f"unknown shape in --shapes {args.shapes}")
    wanted = {key(r) for r in ours["rows"]} if ours is not None else None
    dtypes = set(args.dtypes.split(",")) if args.dtypes else None
    if args.row_seconds is not None and not args.row_seconds > 0:
        sys.exit("--row-seconds must be positive")
    row_seconds = args.row_seconds if args.row_seconds is not None else (0.25 if args.quick else 0.8)
    if args.interleave or args.pair:
        if args.interleave:
            rows, ours = run_interleaved(args.interleave, args.device, args.quick, row_seconds, only, dtypes)
        else:
            rows, ours = run_paired(args.pair, args.device, args.quick, row_seconds, only, dtypes)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(ours, f, indent=1)
    else:
        rows = run_torch(args.device, args.quick, row_seconds, only, wanted, dtypes)
    out = table(rows, ours, args.device)
    print(out, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(out)
    if args.torch_json:
        with open(args.torch_json, "w") as f:
            json.dump({"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(), "quick": args.quick, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
