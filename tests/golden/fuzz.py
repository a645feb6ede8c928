#!/usr/bin/env python3
"""Random parity cases against PyTorch, for breadth the committed golden files cannot afford.

Run:  /work/torchenv/bin/python tests/golden/fuzz.py OUT_DIR [CASES_PER_OP] [SEED] [large]
Then: CUPOOL_GOLDEN_DIR=OUT_DIR cargo test --release --test parity parity_

It writes the same JSON families as generate.py (same format, same reference rules) into
OUT_DIR, which the parity tests read instead of tests/golden when CUPOOL_GOLDEN_DIR is set.
The committed cases use two or three channels; these draw channel counts and plane counts
that reach the CPU's vector paths too (blocks of 8 and 32 channels, eight-plane lanes, groups
of sixteen planes), with random options, every dtype and layout, ties, signed zeros, NaN and
infinities. Calls that PyTorch rejects go to errors.json, so they are checked as errors.
Reductions draw positive values or small integers (sums of other signed values cancel, and then
any two summation orders differ by more than a tolerance relative to the result). Max backward skips windows that hold
no input element where PyTorch's index then lies outside the plane (its CPU backward writes
past the plane there).
"""

import json
import os
import random
import sys

import torch

import generate as g

NAN, INF = float("nan"), float("inf")
CHANNELS = (1, 2, 3, 7, 8, 9, 16, 17, 24, 31, 32, 33, 40, 64, 72, 96)
SIDES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 14, 16, 17, 23, 28, 31)
# `large`: planes past the CPU's small-plane paths (lanes, register tables, order-free sums)
LARGE_SIDES = (7, 14, 28, 33, 48, 56, 65, 80, 112)
LARGE = len(sys.argv) > 4 and sys.argv[4] == "large"


def draw_input(rng, name, dtype, cl, max_elems=24000, kinds=("randn", "randn", "int", "pos")):
    sides = LARGE_SIDES if LARGE else SIDES
    max_elems *= 10 if LARGE else 1
    while True:
        n, c = rng.choice((1, 1, 2, 3)), rng.choice(CHANNELS)
        h, w = rng.choice(sides), rng.choice(sides)
        if n * c * h * w <= max_elems:
            break
    three_d = not cl and rng.random() < 0.15
    shape = (c, h, w) if three_d else (n, c, h, w)
    kind = rng.choice(kinds)
    numel = 1
    for s in shape:
        numel *= s
    specials = []
    if rng.random() < 0.35:
        for _ in range(rng.randint(1, 4)):
            specials.append((rng.randrange(numel), rng.choice((NAN, INF, -INF, -0.0, 0.0))))
    x = g.make(name, shape, dtype, kind, channels_last=cl and not three_d, specials=specials)
    return x, cl and not three_d


def draw_window(rng, h, w, with_dilation):
    k = (rng.randint(1, min(5, h + 2)), rng.randint(1, min(5, w + 2)))
    stride = None if rng.random() < 0.2 else (rng.randint(1, 4), rng.randint(1, 4))
    pad = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
    ceil = rng.random() < 0.4
    if with_dilation:
        d = (rng.choice((1, 1, 2, 3)), rng.choice((1, 1, 2, 3)))
        return g.max_params(k, stride, pad, d, ceil)
    cip = rng.random() < 0.6
    div = None if rng.random() < 0.75 else rng.choice((1, 2, 3, 5, -2, 7))
    return g.avg_params(k, stride, pad, ceil, cip, div)


def accepted(op, x, p):
    try:
        with torch.no_grad():
            g.call_op(op, x, p)
        return True
    except Exception:  # noqa: BLE001 - rejected calls become error cases
        return False


def main():
    out = sys.argv[1]
    per_op = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    dtypes = list(g.DTYPES)
    forward = [
        ("avg_pool2d", "avg_pool2d"),
        ("max_pool2d", "max_pool2d"),
        ("max_pool2d", "max_pool2d_with_indices"),
        ("adaptive", "adaptive_avg_pool2d"),
        ("adaptive", "adaptive_max_pool2d"),
        ("adaptive", "adaptive_max_pool2d_with_indices"),
        ("reduce", "mean"),
        ("reduce", "sum"),
        ("gap", "gap"),
    ]
    for family, op in forward:
        for i in range(per_op):
            name = f"fuzz{seed}_{op}_{i}"
            dt, cl = rng.choice(dtypes), rng.random() < 0.5
            # Sums of signed values cancel, and then any two summation orders differ by more
            # than a tolerance relative to the result: reductions get positive values (as in
            # generate.py) or small integers, whose sums are exact (the property tests bound
            # the error by the sum of |x| instead).
            kinds = ("pos", "int") if family in ("reduce", "gap") else ("randn", "randn", "int", "pos", "wide")
            x, cl = draw_input(rng, name, dt, cl, kinds=kinds)
            h, w = x.shape[-2], x.shape[-1]
            if op == "avg_pool2d":
                p = draw_window(rng, h, w, False)
            elif op.startswith("max_pool2d"):
                p = draw_window(rng, h, w, True)
            elif op.startswith("adaptive"):
                p = {"output_size": [rng.randint(1, h + 3), rng.randint(1, w + 3)]}
            elif op in ("mean", "sum"):
                dims = sorted(rng.sample(range(x.dim()), rng.randint(1, x.dim())))
                dims = [d - x.dim() if rng.random() < 0.3 else d for d in dims]
                p = {"dims": dims, "keepdim": rng.random() < 0.5}
            else:
                if x.dim() != 4:
                    continue
                p = {"formulation": rng.choice(("avg_pool2d", "adaptive_avg_pool2d", "mean"))}
            if accepted(op, x, p):
                g.fwd(family, name, op, p, x, cl)
            else:
                g.err(name, op, p, tuple(x.shape), dt, cl)
    backward = [
        ("avg_pool2d_backward", lambda rng, h, w: draw_window(rng, h, w, False)),
        ("max_pool2d_backward", lambda rng, h, w: draw_window(rng, h, w, True)),
        ("adaptive_avg_pool2d_backward", lambda rng, h, w: {"output_size": [rng.randint(1, h + 3), rng.randint(1, w + 3)]}),
        ("adaptive_max_pool2d_backward", lambda rng, h, w: {"output_size": [rng.randint(1, h + 3), rng.randint(1, w + 3)]}),
    ]
    for op, params in backward:
        for i in range(per_op):
            name = f"fuzz{seed}_{op}_{i}"
            dt, cl = rng.choice(dtypes), rng.random() < 0.5
            x, cl = draw_input(rng, name, dt, cl, max_elems=8000)
            x = torch.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)  # finite gradients
            p = params(rng, x.shape[-2], x.shape[-1])
            if not accepted(g.BACKWARD_OF[op], x, p):
                continue
            if op == "max_pool2d_backward":
                # A dilated window may hold no input element at all (every tap in padding or
                # past the edge): PyTorch's forward then gives -inf and an index outside the
                # plane, and its CPU backward writes there (heap corruption). Not a reference.
                _, idx = g.call_max(x, p)
                if idx.numel() and (idx.min() < 0 or idx.max() >= x.shape[-2] * x.shape[-1]):
                    continue
            g.bwd(name, op, p, x, cl, grad_channels_last=(not cl) if x.dim() == 4 and rng.random() < 0.3 else None)
    for i in range(per_op):
        name = f"fuzz{seed}_mean_backward_{i}"
        dt, cl = rng.choice(dtypes), rng.random() < 0.5
        x, cl = draw_input(rng, name, dt, cl, max_elems=8000)
        x = torch.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)
        dims = sorted(rng.sample(range(x.dim()), rng.randint(1, x.dim())))
        g.bwd(name, "mean_backward", {"dims": dims, "keepdim": rng.random() < 0.5}, x, cl)
    g.FILES["errors"] = g.ERRORS
    meta = {"torch_version": torch.__version__, "generator": f"tests/golden/fuzz.py seed {seed}"}
    for family in ("avg_pool2d", "max_pool2d", "adaptive", "reduce", "gap", "backward", "errors"):
        cases = g.FILES.get(family, [])
        with open(os.path.join(out, family + ".json"), "w") as f:
            json.dump({"meta": meta, "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        print(f"{family}: {len(cases)} cases")


if __name__ == "__main__":
    main()
