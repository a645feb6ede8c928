#!/usr/bin/env python3
"""Writes the PyTorch reference files for cupool's parity tests.

Run:  /work/torchenv/bin/python tests/golden/generate.py     (any torch >= 2.1, CPU only)

Every value, index, output shape, layout and error in the JSON files comes from PyTorch on the
CPU. The Rust tests never need torch: they read the committed files. See README.md for the format.
Seeds are fixed per case (crc32 of the case name), so a rerun writes the same files.
"""

import json
import os
import sys
import zlib

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}
NAMES[torch.int64] = "i64"
NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------------------------------------
# encoding


def hexdata(t):
    """Little-endian element bytes in logical row-major order."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def record(t):
    """shape, dtype, data, and (for 4-D) both torch layout flags of a result tensor."""
    d = {"shape": list(t.shape), "dtype": NAMES[t.dtype], "data": hexdata(t)}
    d["channels_last"] = bool(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))
    d["contiguous"] = bool(t.is_contiguous())
    return d


def input_record(t, channels_last):
    return {"shape": list(t.shape), "dtype": NAMES[t.dtype], "channels_last": channels_last, "data": hexdata(t)}


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def make(name, shape, dtype="f32", kind="randn", channels_last=False, specials=(), salt=""):
    """A deterministic input. kinds: randn, pos (uniform 0.5..1.5, for long sums without
    cancellation), int (small integers, so windows tie), wide (magnitudes over most of the
    dtype's range, for fuzz.py)."""
    g = torch.Generator().manual_seed(seed_of(name + salt))
    if kind == "randn":
        t = torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "pos":
        t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
    elif kind == "int":
        t = torch.randint(-2, 3, shape, generator=g).to(torch.float64)
    elif kind == "wide":
        # magnitudes over most of the dtype's range: subnormals, and for bf16 and f32 some
        # that round to inf
        span = {"f16": 26, "bf16": 140, "f32": 140, "f64": 300}[dtype]
        e = torch.randint(-span, span // 6 if dtype == "f16" else span - 12, shape, generator=g)
        t = torch.randn(shape, generator=g, dtype=torch.float64) * torch.pow(2.0, e.to(torch.float64))
    else:
        raise ValueError(kind)
    t = t.to(DTYPES[dtype])
    flat = t.reshape(-1)
    for idx, v in specials:
        flat[idx] = v
    t = flat.reshape(shape)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


# ---------------------------------------------------------------------------------------------
# op calls (params dicts use the Rust API's names, every option explicit)


def avg_params(kernel, stride=None, padding=(0, 0), ceil_mode=False, count_include_pad=True, divisor_override=None):
    return {
        "kernel": list(kernel),
        "stride": None if stride is None else list(stride),
        "padding": list(padding),
        "ceil_mode": ceil_mode,
        "count_include_pad": count_include_pad,
        "divisor_override": divisor_override,
    }


def max_params(kernel, stride=None, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    return {
        "kernel": list(kernel),
        "stride": None if stride is None else list(stride),
        "padding": list(padding),
        "dilation": list(dilation),
        "ceil_mode": ceil_mode,
    }


def call_avg(x, p):
    return F.avg_pool2d(
        x,
        tuple(p["kernel"]),
        stride=None if p["stride"] is None else tuple(p["stride"]),
        padding=tuple(p["padding"]),
        ceil_mode=p["ceil_mode"],
        count_include_pad=p["count_include_pad"],
        divisor_override=p["divisor_override"],
    )


def call_max(x, p):
    """Values and indices through max_pool2d_with_indices: the native kernel (the one CUDA runs
    too). Plain max_pool2d may go through mkldnn on the CPU for 16-bit types; check it agrees."""
    kw = dict(
        stride=None if p["stride"] is None else tuple(p["stride"]),
        padding=tuple(p["padding"]),
        dilation=tuple(p["dilation"]),
        ceil_mode=p["ceil_mode"],
    )
    v, i = F.max_pool2d(x, tuple(p["kernel"]), return_indices=True, **kw)
    plain = F.max_pool2d(x, tuple(p["kernel"]), **kw)
    if not torch.equal(plain.isnan(), v.isnan()) or not torch.equal(
        torch.nan_to_num(plain, nan=0.0), torch.nan_to_num(v, nan=0.0)
    ):
        print(f"note: max_pool2d and max_pool2d_with_indices disagree for {p} {x.dtype}", file=sys.stderr)
    return v, i


def call_op(op, x, p):
    """(result, indices or None) of a forward op."""
    if op == "avg_pool2d":
        return call_avg(x, p), None
    if op in ("max_pool2d", "max_pool2d_with_indices"):
        v, i = call_max(x, p)
        return v, (i if op == "max_pool2d_with_indices" else None)
    if op == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(x, tuple(p["output_size"])), None
    if op in ("adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
        v, i = F.adaptive_max_pool2d(x, tuple(p["output_size"]), return_indices=True)
        return v, (i if op.endswith("with_indices") else None)
    if op == "mean":
        return x.mean(p["dims"], keepdim=p["keepdim"]), None
    if op == "sum":
        return x.sum(p["dims"], keepdim=p["keepdim"]), None
    if op == "gap":
        n, c = x.shape[0], x.shape[1]
        f = p["formulation"]
        if f == "avg_pool2d":
            return F.avg_pool2d(x, tuple(x.shape[2:])), None
        if f == "adaptive_avg_pool2d":
            return F.adaptive_avg_pool2d(x, (1, 1)), None
        if f == "mean":
            return torch.mean(x.view(n, c, -1), dim=2), None
    raise ValueError(op)


# ---------------------------------------------------------------------------------------------
# case builders


FILES = {}
# dtype/layout pairs for the larger odd-plane cases (the base cases cover all eight pairs)
ODD_COMBOS = (("f32", False), ("bf16", True))


def thin(dt, options):
    """Every option for f32 and bf16; every other one for f64 and f16 (same code paths, and the
    files stay small). Entries 0, 2, 4, ... are kept, so list the must-have options first."""
    return [o for i, o in enumerate(options) if dt in ("f32", "bf16") or i % 2 == 0]


def add(file, case):
    names = {c["name"] for c in FILES.setdefault(file, [])}
    assert case["name"] not in names, case["name"]
    FILES[file].append(case)


def fwd(file, name, op, params, x, channels_last=False):
    with torch.no_grad():
        y, idx = call_op(op, x, params)
    case = {"name": name, "op": op, "params": params, "input": input_record(x, channels_last), "expected": record(y)}
    if idx is not None:
        case["indices"] = {"shape": list(idx.shape), "data": hexdata(idx)}
        case["indices"]["channels_last"] = record(idx)["channels_last"]
        case["indices"]["contiguous"] = record(idx)["contiguous"]
    add(file, case)


BACKWARD_OF = {
    "avg_pool2d_backward": "avg_pool2d",
    "max_pool2d_backward": "max_pool2d_with_indices",
    "adaptive_avg_pool2d_backward": "adaptive_avg_pool2d",
    "adaptive_max_pool2d_backward": "adaptive_max_pool2d_with_indices",
    "mean_backward": "mean",
}


def bwd(name, op, params, x, channels_last=False, grad_kind="randn", grad_channels_last=None):
    """A backward case; `grad_out` (and the indices) laid out like the input unless
    `grad_channels_last` says otherwise."""
    xr = x.detach().clone().requires_grad_(True)
    if channels_last:
        # clone() keeps the channels-last strides; the gradient obeys the input's layout.
        assert xr.is_contiguous(memory_format=torch.channels_last)
    y, idx = call_op(BACKWARD_OF[op], xr, params)
    g = make(name, tuple(y.shape), NAMES[x.dtype], grad_kind, salt="/grad")
    grad_cl = (channels_last if grad_channels_last is None else grad_channels_last) and g.dim() == 4
    if grad_cl:
        g = g.contiguous(memory_format=torch.channels_last)
    y.backward(g)
    expected = xr.grad
    sixteen_bit = x.dtype in (torch.float16, torch.bfloat16)
    if idx is not None and sixteen_bit:
        # PyTorch's CPU max-pool backward adds into a 16-bit grad_input, rounding after every
        # add; its CUDA kernels (and cupool, by the numerics contract) sum in f32 and round
        # once. Overlapping windows make the two differ by more than the f16 tolerance, so the
        # reference for 16-bit max backward is the f32 sum of the same scatter, rounded once.
        planes = x.shape[-2] * x.shape[-1]
        acc = torch.zeros(x.numel() // planes, planes, dtype=torch.float32)
        src = g.float().reshape(-1, g.shape[-2] * g.shape[-1])
        acc.scatter_add_(1, idx.reshape(src.shape), src)
        expected = acc.reshape(x.shape).to(x.dtype)
    elif op in ("avg_pool2d_backward", "adaptive_avg_pool2d_backward") and sixteen_bit:
        # The same for averages: PyTorch's 16-bit CPU kernels (and its CUDA adaptive one) add
        # each share into the 16-bit grad_input; cupool sums the shares in f32 and rounds once.
        # Where many windows overlap (adaptive pooling to a larger map) the two differ by
        # several ulps, so the reference is torch's own f32 computation, rounded once.
        xf = x.detach().float().requires_grad_(True)
        yf, _ = call_op(BACKWARD_OF[op], xf, params)
        yf.backward(g.float())
        expected = xf.grad.to(x.dtype)
    if expected is not xr.grad and channels_last:
        expected = expected.contiguous(memory_format=torch.channels_last)
    add_backward(name, op, params, x, channels_last, g, grad_cl, expected, idx)


def add_backward(name, op, params, x, channels_last, g, grad_cl, expected, idx):
    """Records a backward case: the input, `grad_out` (channels-last where `grad_cl`), the
    expected gradient and, for max backward, the indices."""
    case = {
        "name": name,
        "op": op,
        "params": params,
        "input": input_record(x, channels_last),
        "grad_out": input_record(g, grad_cl),
        "expected": record(expected),
    }
    if idx is not None:
        case["indices"] = {"shape": list(idx.shape), "data": hexdata(idx)}
    add("backward", case)


def bwd_stray_indices(name, params, x, channels_last):
    """max_pool2d_backward with indices spread over each whole plane, most outside their
    output's window, through the aten op (PyTorch's CPU scatter). f32, so no rounding rule
    matters."""
    y, _ = call_max(x, params)
    plane = x.shape[-2] * x.shape[-1]
    idx = (torch.arange(y.numel(), dtype=torch.int64) * 7919 + 13).remainder(plane).reshape(y.shape)
    g = make(name, tuple(y.shape), NAMES[x.dtype], salt="/grad")
    if channels_last:
        idx = idx.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    expected = torch.ops.aten.max_pool2d_with_indices_backward(
        g, x, params["kernel"], params["stride"] or [], params["padding"], params["dilation"], params["ceil_mode"], idx)
    add_backward(name, "max_pool2d_backward", params, x, channels_last, g, channels_last, expected, idx)


ERRORS = []
ACCEPTED = []


def err(name, op, params, shape, dtype="f32", channels_last=False, grad_shape=None, indices_shape=None):
    """Runs the call in torch; records it in errors.json only if torch rejects it."""
    x = torch.zeros(shape, dtype=DTYPES[dtype])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    case = {"name": name, "op": op, "params": params, "input": {"shape": list(shape), "dtype": dtype, "channels_last": channels_last}}
    try:
        if op in BACKWARD_OF:
            xr = x.clone().requires_grad_(True)
            y, idx = call_op(BACKWARD_OF[op], xr, params)
            g = torch.zeros(grad_shape, dtype=x.dtype)
            case["grad_out"] = {"shape": list(grad_shape), "dtype": dtype, "channels_last": False}
            if indices_shape is not None:
                # A wrong indices shape goes to the aten op directly (autograd would use its own).
                case["indices"] = {"shape": list(indices_shape)}
                ind = torch.zeros(indices_shape, dtype=torch.int64)
                torch.ops.aten.max_pool2d_with_indices_backward(
                    g, x, params["kernel"], params["stride"] or [], params["padding"], params["dilation"],
                    params["ceil_mode"], ind)
            else:
                if idx is not None:
                    case["indices"] = {"shape": list(idx.shape)}
                torch.autograd.grad(y, xr, g)
        else:
            call_op(op, x, params)
    except Exception as e:  # noqa: BLE001 - recording whatever torch raises is the point
        case["torch_exception"] = type(e).__name__
        case["torch_error"] = str(e).splitlines()[0]
        ERRORS.append(case)
        return
    ACCEPTED.append(name)
    print(f"note: torch accepts {name} ({op} {params} on {shape}); not an error case", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# the cases


def avg_cases():
    F_ = "avg_pool2d"
    P = avg_params
    base = [
        ("k2", P((2, 2))),
        ("k3_s2_p1", P((3, 3), (2, 2), (1, 1))),
        ("k3_s2_p1_ceil", P((3, 3), (2, 2), (1, 1), ceil_mode=True)),
        ("k3_s2_p1_ceil_excl", P((3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=False)),
        ("k3_s1_p1_excl", P((3, 3), (1, 1), (1, 1), count_include_pad=False)),
        ("k2x3_s1x2_p1x0", P((2, 3), (1, 2), (1, 0))),
        ("k3_div4", P((3, 3), (2, 2), (1, 1), divisor_override=4)),
        ("k2_divneg3", P((2, 2), divisor_override=-3)),
        ("k3_s2_ceil_div1", P((3, 3), (2, 2), (0, 0), ceil_mode=True, divisor_override=1)),
        ("k1_s1", P((1, 1), (1, 1))),
        ("k4x1_s3x1_p2x0_ceil", P((4, 1), (3, 1), (2, 0), ceil_mode=True)),
        ("k5_s3_p2_ceil_excl", P((5, 5), (3, 3), (2, 2), ceil_mode=True, count_include_pad=False)),
    ]
    for dt in DTYPES:
        for cl in (False, True):
            for tag, p in thin(dt, base):
                name = f"{tag}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, F_, p, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
    # 3-D input
    for tag, p in base[:4]:
        name = f"{tag}_3d_f32"
        fwd(F_, name, F_, p, make(name, (3, 7, 6)))
    # odd planes
    for shape, p in [
        ((2, 2, 1, 1), P((1, 1))),
        ((1, 3, 7, 7), P((7, 7))),
        ((1, 2, 13, 17), P((3, 3), (2, 2), (1, 1), ceil_mode=True)),
        ((1, 1, 1, 4099), P((1, 4099))),
        ((1, 1, 1, 4099), P((1, 7), (1, 5), (0, 3), ceil_mode=True, count_include_pad=False)),
        ((1, 2, 300, 1), P((300, 1))),
        ((1, 2, 300, 1), P((4, 1), (3, 1), (2, 0))),
        ((2, 3, 13, 17), P((13, 17))),
    ]:
        for dt, cl in ODD_COMBOS[: 1 if shape[3] > 1000 else 2]:
            name = f"plane{shape[2]}x{shape[3]}_k{p['kernel'][0]}x{p['kernel'][1]}_{dt}_{'nhwc' if cl else 'nchw'}"
            fwd(F_, name, F_, p, make(name, shape, dt, "pos", channels_last=cl), cl)
    # NaN and inf propagate through the sum
    x = make("avg_nan", (1, 2, 4, 4), specials=[(0, NAN), (5, INF), (21, -INF), (22, INF)])
    fwd(F_, "nan_inf_f32", F_, P((2, 2)), x)
    fwd(F_, "nan_inf_f32_nhwc", F_, P((2, 2)), x.contiguous(memory_format=torch.channels_last), True)
    # boundaries torch accepts
    fwd(F_, "boundary_padding_half_kernel", F_, P((4, 4), (2, 2), (2, 2)), make("b1", (1, 2, 5, 5)))
    fwd(F_, "boundary_ceil_drops_last_window", F_, P((2, 2), (2, 2), (1, 1), ceil_mode=True), make("b2", (1, 2, 4, 4)))
    fwd(F_, "boundary_ceil_keeps_overhang", F_, P((2, 2), (2, 2), (0, 0), ceil_mode=True), make("b3", (1, 2, 5, 5)))
    fwd(F_, "boundary_kernel_equals_padded_input", F_, P((3, 3), (1, 1), (1, 1)), make("b4", (1, 1, 1, 1)))
    # batch 0
    for cl in (False, True):
        name = f"batch0_{'nhwc' if cl else 'nchw'}"
        fwd(F_, name, F_, P((2, 2)), make(name, (0, 3, 4, 4), channels_last=cl), cl)


def keys_input():
    """Channels-last bf16 (2, 72, 7, 7): small integers, -0 and +0 scattered, one NaN."""
    n = 2 * 72 * 49
    specials = [(i, -0.0) for i in range(0, n, 7)] + [(i, 0.0) for i in range(3, n, 11)] + [(40 * 49 + 10, NAN)]
    return make("keys_bf16", (2, 72, 7, 7), "bf16", "int", channels_last=True, specials=specials)


def max_cases():
    F_ = "max_pool2d"
    P = max_params
    base = [
        ("k2", P((2, 2))),
        ("k3_s2_p1", P((3, 3), (2, 2), (1, 1))),
        ("k3_s2_p1_ceil", P((3, 3), (2, 2), (1, 1), ceil_mode=True)),
        ("k3_s1_p1_d2", P((3, 3), (1, 1), (1, 1), (2, 2))),
        ("k2x3_s1x2_p1x1_d2x1_ceil", P((2, 3), (1, 2), (1, 1), (2, 1), True)),
        ("k3_d3_s2_ceil", P((3, 3), (2, 2), (0, 0), (3, 3), True)),
        ("k1", P((1, 1))),
    ]
    for dt in DTYPES:
        for cl in (False, True):
            for tag, p in thin(dt, base):
                for op in ("max_pool2d", "max_pool2d_with_indices"):
                    name = f"{op}_{tag}_{dt}_{'nhwc' if cl else 'nchw'}"
                    fwd(F_, name, op, p, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
    for tag, p in base[:4]:
        name = f"{tag}_3d_f32"
        fwd(F_, name, "max_pool2d_with_indices", p, make(name, (3, 7, 6)))
    # odd planes
    for shape, p in [
        ((2, 2, 1, 1), P((1, 1))),
        ((1, 3, 7, 7), P((7, 7))),
        ((1, 2, 13, 17), P((3, 3), (2, 2), (1, 1), (1, 1), True)),
        ((1, 1, 1, 4099), P((1, 4099))),
        ((1, 1, 1, 4099), P((1, 7), (1, 5), (0, 3), (1, 2), True)),
        ((1, 2, 300, 1), P((300, 1))),
        ((1, 2, 300, 1), P((4, 1), (3, 1), (2, 0))),
    ]:
        for dt, cl in (("f32", False), ("f16", True))[: 1 if shape[3] > 1000 else 2]:
            name = f"plane{shape[2]}x{shape[3]}_k{p['kernel'][0]}x{p['kernel'][1]}_{dt}_{'nhwc' if cl else 'nchw'}"
            fwd(F_, name, "max_pool2d_with_indices", p, make(name, shape, dt, channels_last=cl), cl)
    # ties: small integers, first maximum wins
    for dt in DTYPES:
        for cl in (False, True):
            for tag, p in [("k3_s1_p1", P((3, 3), (1, 1), (1, 1))), ("k2_d2", P((2, 2), (1, 1), (0, 0), (2, 2)))]:
                name = f"ties_{tag}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, "max_pool2d_with_indices", p, make(name, (2, 3, 6, 7), dt, "int", channels_last=cl), cl)
    # NaN wins (index of the last NaN in scan order), inf, all -inf windows, padding never wins
    for dt in DTYPES:
        for cl in (False, True):
            x = make(
                f"nan_{dt}",
                (1, 2, 6, 6),
                dt,
                specials=[
                    (0, NAN), (7, NAN),  # two NaNs in the first 2x2 window -> the last one (7)
                    (3, INF), (2, NAN),  # NaN beats +inf
                    (4, -INF), (5, -INF), (10, -INF), (11, -INF),  # window of all -inf
                    (14, INF), (15, INF),  # tie of +inf -> first
                    (36 + 0, -INF), (36 + 1, -INF), (36 + 6, -INF), (36 + 7, -INF),
                    (36 + 28, NAN),
                ],
            )
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            for tag, p in [("k2", P((2, 2))), ("k3_s2_p1_ceil", P((3, 3), (2, 2), (1, 1), (1, 1), True))]:
                name = f"nan_inf_{tag}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, "max_pool2d_with_indices", p, x, cl)
    # channels-last bf16 with indices in blocks of 32 channels (72: two blocks and 8 over),
    # where the CPU compares the bits as integer keys: ties of small integers and of both
    # zeros, a NaN in one block (that block takes the f32 rule)
    x = keys_input()
    for tag, p in [("k3_s2_p1", P((3, 3), (2, 2), (1, 1))), ("k2", P((2, 2)))]:
        fwd(F_, f"keys_{tag}_bf16_nhwc", "max_pool2d_with_indices", p, x, True)
    # a dilated window past the edge holds no input element (columns -1 and 1 of W = 1):
    # -inf, and the index of the first in-bounds row and column, (0, 1), an element outside
    # the window (flat index 1)
    for cl in (False, True):
        name = f"dilated_window_past_the_edge_{'nhwc' if cl else 'nchw'}"
        fwd(F_, name, "max_pool2d_with_indices", P((1, 2), (3, 3), (0, 1), (2, 2), True), make(name, (1, 2, 3, 1), channels_last=cl), cl)
    # padded windows of negative values: padding must not win (it is not 0)
    x = -make("negpad", (1, 1, 5, 5), kind="pos")
    fwd(F_, "negative_with_padding", "max_pool2d_with_indices", P((3, 3), (2, 2), (1, 1)), x)
    # boundaries torch accepts
    fwd(F_, "boundary_padding_half_kernel_dilated", "max_pool2d_with_indices", P((4, 4), (2, 2), (2, 2), (2, 2)), make("mb1", (1, 2, 5, 5)))
    fwd(F_, "boundary_ceil_drops_last_window", "max_pool2d_with_indices", P((2, 2), (2, 2), (1, 1), (1, 1), True), make("mb2", (1, 2, 4, 4)))
    fwd(F_, "boundary_ceil_keeps_overhang", "max_pool2d_with_indices", P((2, 2), (2, 2), (0, 0), (1, 1), True), make("mb3", (1, 2, 5, 5)))
    for cl in (False, True):
        name = f"batch0_{'nhwc' if cl else 'nchw'}"
        fwd(F_, name, "max_pool2d_with_indices", P((2, 2)), make(name, (0, 3, 4, 4), channels_last=cl), cl)


def adaptive_cases():
    F_ = "adaptive"
    outs = [
        ((7, 8), (3, 3), "nondiv"),
        ((7, 8), (5, 11), "larger"),
        ((7, 8), (7, 8), "same"),
        ((7, 8), (1, 1), "1x1"),
        ((7, 8), (2, 4), "divisible"),
        ((6, 5), (4, 1), "mixed"),
    ]
    for dt in DTYPES:
        for cl in (False, True):
            for plane, out, tag in thin(dt, outs):
                for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
                    if op == "adaptive_max_pool2d" and tag not in ("nondiv", "1x1"):
                        continue
                    name = f"{op}_{tag}_{dt}_{'nhwc' if cl else 'nchw'}"
                    fwd(F_, name, op, {"output_size": list(out)}, make(name, (2, 3) + plane, dt, channels_last=cl), cl)
    for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d_with_indices"):
        name = f"{op}_3d_f32"
        fwd(F_, name, op, {"output_size": [3, 2]}, make(name, (3, 7, 5)))
        for plane, out in [((1, 1), (1, 1)), ((1, 1), (3, 2)), ((13, 17), (5, 7)), ((300, 1), (7, 1)), ((7, 7), (1, 1))]:
            for dt, cl in ODD_COMBOS:
                name = f"{op}_plane{plane[0]}x{plane[1]}_o{out[0]}x{out[1]}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, op, {"output_size": list(out)}, make(name, (1, 2) + plane, dt, "pos", channels_last=cl), cl)
        for out, dt in (((1, 6), "f32"), ((1, 1), "bf16")):
            name = f"{op}_plane1x4099_o{out[0]}x{out[1]}_{dt}"
            fwd(F_, name, op, {"output_size": list(out)}, make(name, (1, 1, 1, 4099), dt, "pos"))
        # output size 0 and batch 0 are accepted by torch (empty results)
        fwd(F_, f"{op}_output_0x2", op, {"output_size": [0, 2]}, make("a0", (1, 2, 4, 4)))
        fwd(F_, f"{op}_batch0", op, {"output_size": [2, 2]}, make("a1", (0, 2, 4, 4)))
        fwd(F_, f"{op}_batch0_nhwc", op, {"output_size": [2, 2]}, make("a1", (0, 2, 4, 4), channels_last=True), True)
    fwd(F_, "adaptive_avg_pool2d_channels0", "adaptive_avg_pool2d", {"output_size": [2, 2]}, make("a2", (1, 0, 4, 4)))
    fwd(F_, "adaptive_max_pool2d_with_indices_3d_channels0", "adaptive_max_pool2d_with_indices", {"output_size": [2, 2]}, make("a3", (0, 4, 4)))
    # NCHW planes past the CPU's lane path (2048 elements): max without indices columns first
    # (large windows); eight-plane groups (bf16: AVX-512 permutes) for averages and indices
    for dt in ("f32", "bf16"):
        x = make(f"alarge_{dt}", (1, 1, 46, 46), dt, "int", specials=[(5, NAN), (700, -INF), (701, INF)])
        for out in ((2, 2), (3, 5)):
            fwd(F_, f"large_plane_o{out[0]}x{out[1]}_{dt}", "adaptive_max_pool2d", {"output_size": list(out)}, x)
    x = make("large_planes8_bf16", (1, 8, 46, 46), "bf16")
    for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d_with_indices"):
        fwd(F_, f"{op}_large_planes8_bf16", op, {"output_size": [7, 7]}, x)
    # bf16 NCHW averages to four outputs: groups of 16 planes whose sums are exact in any
    # order take the CPU's order-free kernel, the others PyTorch's order (a -0 plane, a mix
    # of zeros, an inf, a value too small and values too large for the check).
    specials = [(3 * 49 + i, -0.0) for i in range(49)] + [(5 * 49 + i, (-0.0, 0.0)[i % 2]) for i in range(49)]
    specials += [(20 * 49 + 7, INF), (50 * 49 + 30, 1e-30), (60 * 49 + 1, 1e30), (70 * 49 + 9, 3e38), (70 * 49 + 10, 3e38)]
    x = make("exact_sums_bf16", (2, 40, 7, 7), "bf16", specials=specials)
    fwd(F_, "adaptive_avg_pool2d_exact_sums_o2x2_bf16", "adaptive_avg_pool2d", {"output_size": [2, 2]}, x)
    for plane, out in (((8, 8), (2, 2)), ((6, 5), (2, 2)), ((5, 7), (1, 4))):
        name = f"adaptive_avg_pool2d_exact_sums_plane{plane[0]}x{plane[1]}_o{out[0]}x{out[1]}_bf16"
        fwd(F_, name, "adaptive_avg_pool2d", {"output_size": list(out)}, make(name, (1, 21) + plane, "bf16", "pos"))
    # ties, NaN, inf
    for dt in DTYPES:
        for cl in (False, True):
            x = make(f"aties_{dt}", (1, 2, 7, 6), dt, "int", specials=[(0, NAN), (8, NAN), (3, -INF), (20, INF), (21, INF)])
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            for out in thin(dt, ((3, 4), (1, 1), (9, 9))):
                name = f"ties_nan_o{out[0]}x{out[1]}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, "adaptive_max_pool2d_with_indices", {"output_size": list(out)}, x, cl)
                name = f"avg_nan_o{out[0]}x{out[1]}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, "adaptive_avg_pool2d", {"output_size": list(out)}, x, cl)
    x = torch.full((1, 1, 4, 4), -INF)
    fwd(F_, "all_neg_inf", "adaptive_max_pool2d_with_indices", {"output_size": [2, 3]}, x)
    # channels-last bf16 in blocks of 32 channels compared as integer keys (see max_cases)
    fwd(F_, "keys_o2x2_bf16_nhwc", "adaptive_max_pool2d_with_indices", {"output_size": [2, 2]}, keys_input(), True)


def reduce_cases():
    F_ = "reduce"
    dim_sets_4d = [[2, 3], [-2, -1], [3], [2], [1], [0], [0, 2], [1, 3], [-1, 0, 2], [0, 1, 2, 3], []]
    for op in ("mean", "sum"):
        for dt in DTYPES:
            for cl in (False, True):
                # sum shares mean's reduction; a subset of the dim sets is enough for it
                for dims in thin(dt, dim_sets_4d if op == "mean" else [[2, 3], [1], [-1, 0, 2], []]):
                    for keepdim in (False, True):
                        if dt in ("f16", "bf16") and keepdim and dims not in ([2, 3], [1], []):
                            continue
                        name = f"{op}_{'_'.join(map(str, dims)) or 'all'}_{'keep' if keepdim else 'drop'}_{dt}_{'nhwc' if cl else 'nchw'}"
                        fwd(F_, name, op, {"dims": dims, "keepdim": keepdim}, make(name, (2, 3, 4, 5), dt, "pos", channels_last=cl), cl)
        # other ranks
        for shape, dims in [((7,), [0]), ((7,), []), ((5, 9), [1]), ((5, 9), [-2]), ((5, 9), [0, 1]),
                            ((3, 4, 5), [1]), ((3, 4, 5), [0, 2]), ((3, 4, 5), [-1]), ((2, 2, 3, 2, 3), [1, 3])]:
            for dt in ("f64", "f32", "bf16"):
                for keepdim in (False, True):
                    name = f"{op}_rank{len(shape)}_{'_'.join(map(str, dims)) or 'all'}_{'keep' if keepdim else 'drop'}_{dt}"
                    fwd(F_, name, op, {"dims": dims, "keepdim": keepdim}, make(name, shape, dt, "pos"))
        # long rows and odd planes (the GAP reduction paths)
        for shape in [(1, 1, 1, 4099), (1, 2, 300, 1), (2, 3, 13, 17), (2, 2, 1, 1), (1, 64, 7, 7)]:
            small = shape[1] * shape[2] * shape[3] <= 1000
            for dt, cl in ODD_COMBOS + ((("f64", False), ("f16", True)) if small else ()):
                name = f"{op}_plane{shape[2]}x{shape[3]}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, op, {"dims": [2, 3], "keepdim": False}, make(name, shape, dt, "pos", channels_last=cl), cl)
        # NaN and inf
        x = make(f"{op}_nan", (2, 3, 4, 4), specials=[(0, NAN), (20, INF), (40, -INF), (41, INF), (60, INF)])
        fwd(F_, f"{op}_nan_inf", op, {"dims": [2, 3], "keepdim": False}, x)
        fwd(F_, f"{op}_nan_inf_nhwc", op, {"dims": [2, 3], "keepdim": False}, x.contiguous(memory_format=torch.channels_last), True)
        # zero-size: mean over an empty dim is NaN, sum is 0; batch 0 gives an empty result
        fwd(F_, f"{op}_empty_reduced_dim", op, {"dims": [0], "keepdim": False}, make("e0", (0, 3)))
        fwd(F_, f"{op}_batch0", op, {"dims": [2, 3], "keepdim": False}, make("e1", (0, 3, 4, 4)))
        fwd(F_, f"{op}_batch0_keep_nhwc", op, {"dims": [2, 3], "keepdim": True}, make("e1", (0, 3, 4, 4), channels_last=True), True)
    # f16 sum that only fits because the accumulator is f32
    x = torch.full((1, 1, 64, 64), 30.0, dtype=torch.float16)
    fwd(F_, "mean_f16_large_sum_accumulates_in_f32", "mean", {"dims": [2, 3], "keepdim": False}, x)


def gap_cases():
    F_ = "gap"
    forms = ("avg_pool2d", "adaptive_avg_pool2d", "mean")
    for shape in [(2, 3, 7, 7), (1, 4, 13, 17), (2, 2, 1, 1), (1, 2, 1, 4099), (1, 2, 300, 1), (3, 64, 4, 4)]:
        big = shape[2] * shape[3] * shape[1] > 500
        combos = [(d, c) for d in DTYPES for c in (False, True)]
        if big:
            combos = [("f32", False), ("bf16", True), ("f16", False)]
        for k, (dt, cl) in enumerate(combos):
            x = make(f"gap{shape}{dt}", shape, dt, "pos")
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            # large inputs: one formulation per dtype/layout, rotating, to keep the files small
            for f in (forms[k % 3],) if big else forms:
                name = f"{f}_{'x'.join(map(str, shape))}_{dt}_{'nhwc' if cl else 'nchw'}"
                fwd(F_, name, "gap", {"formulation": f}, x, cl)
    x = make("gapnan", (2, 3, 5, 5), specials=[(0, NAN), (30, INF), (55, -INF), (56, INF)])
    for f in ("avg_pool2d", "adaptive_avg_pool2d", "mean"):
        fwd(F_, f"{f}_nan_inf", "gap", {"formulation": f}, x)


def backward_cases():
    A, M = avg_params, max_params
    avg_specs = [("k2", A((2, 2))), ("k3_s2_p1_ceil", A((3, 3), (2, 2), (1, 1), True)),
                 ("k3_s1_p1_excl", A((3, 3), (1, 1), (1, 1), False, False)),
                 ("k3_s2_div_neg5", A((3, 3), (2, 2), (1, 1), True, True, -5)),
                 ("whole_plane", A((6, 7)))]
    max_specs = [("k2", M((2, 2))), ("k3_s1_p1", M((3, 3), (1, 1), (1, 1))),
                 ("k3_s2_p1_d2_ceil", M((3, 3), (2, 2), (1, 1), (2, 2), True))]
    for dt in DTYPES:
        for cl in (False, True):
            lay = "nhwc" if cl else "nchw"
            for tag, p in thin(dt, avg_specs):
                name = f"avg_{tag}_{dt}_{lay}"
                bwd(name, "avg_pool2d_backward", p, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
            for tag, p in thin(dt, max_specs):
                name = f"max_{tag}_{dt}_{lay}"
                bwd(name, "max_pool2d_backward", p, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
                if tag != "k3_s1_p1":
                    continue
                name = f"max_ties_{tag}_{dt}_{lay}"
                bwd(name, "max_pool2d_backward", p, make(name, (2, 2, 6, 7), dt, "int", channels_last=cl), cl)
            for out in thin(dt, ((3, 3), (1, 1), (9, 11))):
                name = f"adaptive_avg_o{out[0]}x{out[1]}_{dt}_{lay}"
                bwd(name, "adaptive_avg_pool2d_backward", {"output_size": list(out)}, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
                name = f"adaptive_max_o{out[0]}x{out[1]}_{dt}_{lay}"
                bwd(name, "adaptive_max_pool2d_backward", {"output_size": list(out)}, make(name, (2, 2, 6, 7), dt, "int", channels_last=cl), cl)
            for dims, keepdim in thin(dt, (([2, 3], False), ([-1, -2], True), ([1], False), ([0, 2], True), ([], False))):
                name = f"mean_{'_'.join(map(str, dims)) or 'all'}_{'keep' if keepdim else 'drop'}_{dt}_{lay}"
                bwd(name, "mean_backward", {"dims": dims, "keepdim": keepdim}, make(name, (2, 2, 6, 7), dt, channels_last=cl), cl)
            x = make(f"bnan_{dt}", (1, 2, 6, 6), dt, specials=[(0, NAN), (7, NAN), (14, INF), (15, INF), (20, -INF), (21, -INF), (26, -INF), (27, -INF)])
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            bwd(f"max_nan_inf_{dt}_{lay}", "max_pool2d_backward", M((2, 2)), x, cl)
            bwd(f"max_nan_inf_overlap_{dt}_{lay}", "max_pool2d_backward", M((3, 3), (1, 1), (1, 1)), x, cl)
            bwd(f"adaptive_max_nan_inf_{dt}_{lay}", "adaptive_max_pool2d_backward", {"output_size": [4, 4]}, x, cl)
    # many overlapping windows in 16 bits: PyTorch's own 16-bit result is ulps from the f32
    # reference here (see bwd); for the adaptive ones, by more than the tolerance
    for dt in ("f16", "bf16"):
        for cl in (False, True):
            lay = "nhwc" if cl else "nchw"
            name = f"adaptive_avg_overlap_o17x17_{dt}_{lay}"
            bwd(name, "adaptive_avg_pool2d_backward", {"output_size": [17, 17]}, make(name, (1, 8, 9, 9), dt, channels_last=cl), cl)
            name = f"avg_overlap_k5_s1_p2_{dt}_{lay}"
            bwd(name, "avg_pool2d_backward", A((5, 5), (1, 1), (2, 2)), make(name, (1, 8, 9, 9), dt, channels_last=cl), cl)
    # max backward is a scatter: the index of a window with no input element (see max_cases)
    # gets that output's gradient, and so do indices a caller made up, anywhere in the plane
    for cl in (False, True):
        lay = "nhwc" if cl else "nchw"
        name = f"max_dilated_window_past_the_edge_{lay}"
        bwd(name, "max_pool2d_backward", M((1, 2), (3, 3), (0, 1), (2, 2), True), make(name, (1, 2, 3, 1), channels_last=cl), cl)
        name = f"max_stray_indices_{lay}"
        bwd_stray_indices(name, M((3, 3), (2, 2), (1, 1)), make(name, (2, 3, 7, 6), channels_last=cl), cl)
    # 3-D inputs and other ranks
    bwd("avg_3d_f32", "avg_pool2d_backward", A((3, 3), (2, 2), (1, 1)), make("b3d", (3, 7, 6)))
    bwd("max_3d_f32", "max_pool2d_backward", M((3, 3), (2, 2), (1, 1)), make("b3d", (3, 7, 6)))
    bwd("adaptive_avg_3d_f32", "adaptive_avg_pool2d_backward", {"output_size": [4, 4]}, make("b3d", (3, 7, 6)))
    bwd("adaptive_max_3d_f32", "adaptive_max_pool2d_backward", {"output_size": [4, 4]}, make("b3d", (3, 7, 6)))
    bwd("mean_rank3_f64", "mean_backward", {"dims": [1], "keepdim": False}, make("b3d", (3, 7, 6), "f64"))
    bwd("mean_rank2_f32", "mean_backward", {"dims": [0], "keepdim": True}, make("b2d", (5, 9)))
    # odd planes
    bwd("avg_plane1x4099_f32", "avg_pool2d_backward", A((1, 7), (1, 5), (0, 3), True), make("bp", (1, 1, 1, 4099)))
    bwd("max_plane300x1_f32", "max_pool2d_backward", M((4, 1), (3, 1), (2, 0)), make("bp", (1, 2, 300, 1)))
    bwd("adaptive_avg_plane13x17_f32", "adaptive_avg_pool2d_backward", {"output_size": [5, 7]}, make("bp", (1, 2, 13, 17)))
    bwd("mean_plane1x4099_f32", "mean_backward", {"dims": [2, 3], "keepdim": False}, make("bp", (1, 1, 1, 4099)))
    # NCHW gradient planes past 4096 elements with many per share: gathered by rows on the CPU
    for dt in ("f32", "bf16"):
        name = f"adaptive_avg_plane65x64_o2x2_{dt}"
        bwd(name, "adaptive_avg_pool2d_backward", {"output_size": [2, 2]}, make(name, (1, 1, 65, 64), dt))


def error_cases():
    A, M = avg_params, max_params
    s4 = (2, 3, 5, 5)
    for cl in (False, True):
        lay = "_nhwc" if cl else ""
        err(f"avg_kernel0{lay}", "avg_pool2d", A((0, 2), (1, 1)), s4, channels_last=cl)
        err(f"avg_kernel0_default_stride{lay}", "avg_pool2d", A((0, 2)), s4, channels_last=cl)
        err(f"avg_stride0{lay}", "avg_pool2d", A((2, 2), (0, 1)), s4, channels_last=cl)
        err(f"avg_padding_over_half_kernel{lay}", "avg_pool2d", A((2, 2), (1, 1), (2, 0)), s4, channels_last=cl)
        err(f"avg_output_too_small{lay}", "avg_pool2d", A((6, 2)), s4, channels_last=cl)
        err(f"avg_divisor_zero{lay}", "avg_pool2d", A((2, 2), divisor_override=0), s4, channels_last=cl)
        err(f"max_kernel0{lay}", "max_pool2d", M((2, 0), (1, 1)), s4, channels_last=cl)
        err(f"max_stride0{lay}", "max_pool2d", M((2, 2), (1, 0)), s4, channels_last=cl)
        err(f"max_dilation0{lay}", "max_pool2d", M((2, 2), None, (0, 0), (0, 1)), s4, channels_last=cl)
        err(f"max_padding_over_half_effective_kernel{lay}", "max_pool2d", M((3, 3), (1, 1), (0, 3), (2, 2)), s4, channels_last=cl)
        # max_pool2d checks pad <= kernel/2 on the raw kernel too, not only on the dilated one
        err(f"max_padding_over_half_kernel_within_dilated{lay}", "max_pool2d", M((3, 3), (1, 1), (2, 2), (2, 2)), s4, channels_last=cl)
        err(f"max_output_too_small_dilation{lay}", "max_pool2d_with_indices", M((3, 3), None, (0, 0), (3, 3)), s4, channels_last=cl)
        err(f"max_with_indices_kernel0{lay}", "max_pool2d_with_indices", M((0, 0), (1, 1)), s4, channels_last=cl)
    for op, p in [("avg_pool2d", A((2, 2))), ("max_pool2d", M((2, 2))), ("max_pool2d_with_indices", M((2, 2)))]:
        for shape in [(1, 0, 4, 4), (1, 2, 0, 4), (1, 2, 4, 0), (0, 4, 4), (3, 0, 4), (4, 4), (1, 1, 1, 4, 4), (4,)]:
            err(f"{op}_shape_{'x'.join(map(str, shape))}", op, p, shape)
    for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
        for shape in [(1, 2, 0, 4), (1, 2, 4, 0), (1, 0, 4, 4), (3, 0, 4), (4, 4), (1, 1, 1, 4, 4)]:
            err(f"{op}_shape_{'x'.join(map(str, shape))}", op, {"output_size": [2, 2]}, shape)
        err(f"{op}_output_0x0", op, {"output_size": [0, 0]}, s4)
    for op in ("mean", "sum"):
        for dims in ([4], [-5], [2, 2], [2, -2], [0, 1, 2, 3, 0]):
            err(f"{op}_dims_{'_'.join(map(str, dims))}", op, {"dims": dims, "keepdim": False}, s4)
        err(f"{op}_rank1_dim1", op, {"dims": [1], "keepdim": True}, (5,))
    # backward with a wrong grad_out shape
    x4 = (2, 3, 6, 6)
    err("avg_backward_grad_wrong_w", "avg_pool2d_backward", A((2, 2)), x4, grad_shape=(2, 3, 3, 2))
    err("avg_backward_grad_wrong_c", "avg_pool2d_backward", A((2, 2)), x4, grad_shape=(2, 4, 3, 3))
    err("avg_backward_grad_wrong_rank", "avg_pool2d_backward", A((2, 2)), x4, grad_shape=(3, 3, 3))
    err("max_backward_grad_wrong_h", "max_pool2d_backward", M((2, 2)), x4, grad_shape=(2, 3, 2, 3))
    err("max_backward_indices_wrong_shape", "max_pool2d_backward", M((2, 2)), x4, grad_shape=(2, 3, 3, 3), indices_shape=(2, 3, 3, 2))
    err("adaptive_avg_backward_grad_wrong_c", "adaptive_avg_pool2d_backward", {"output_size": [2, 2]}, x4, grad_shape=(2, 4, 2, 2))
    err("adaptive_avg_backward_grad_wrong_n", "adaptive_avg_pool2d_backward", {"output_size": [2, 2]}, x4, grad_shape=(1, 3, 2, 2))
    err("adaptive_avg_backward_grad_wrong_rank", "adaptive_avg_pool2d_backward", {"output_size": [2, 2]}, x4, grad_shape=(2, 3, 2))
    err("adaptive_max_backward_grad_wrong_w", "adaptive_max_pool2d_backward", {"output_size": [2, 2]}, x4, grad_shape=(2, 3, 2, 3))
    # The forward accepts an empty output size; the backward rejects the empty gradient.
    err("adaptive_avg_backward_grad_empty_plane", "adaptive_avg_pool2d_backward", {"output_size": [0, 0]}, x4, grad_shape=(2, 3, 0, 0))
    err("adaptive_avg_backward_grad_empty_w", "adaptive_avg_pool2d_backward", {"output_size": [2, 0]}, x4, grad_shape=(2, 3, 2, 0))
    err("adaptive_max_backward_grad_empty_h", "adaptive_max_pool2d_backward", {"output_size": [0, 3]}, x4, grad_shape=(2, 3, 0, 3))
    err("mean_backward_grad_wrong_shape", "mean_backward", {"dims": [2, 3], "keepdim": False}, x4, grad_shape=(2, 4))
    err("mean_backward_grad_keepdim_mismatch", "mean_backward", {"dims": [2, 3], "keepdim": True}, x4, grad_shape=(2, 3))


def main():
    avg_cases()
    max_cases()
    adaptive_cases()
    reduce_cases()
    gap_cases()
    backward_cases()
    error_cases()
    FILES["errors"] = ERRORS
    files = {"avg_pool2d": "avg_pool2d", "max_pool2d": "max_pool2d", "adaptive": "adaptive", "reduce": "reduce",
             "gap": "gap", "backward": "backward", "errors": "errors"}
    meta = {"torch_version": torch.__version__, "generator": "tests/golden/generate.py"}
    total = 0
    for key, fname in files.items():
        path = os.path.join(HERE, fname + ".json")
        with open(path, "w") as f:
            json.dump({"meta": meta, "cases": FILES[key]}, f, separators=(",", ":"))
            f.write("\n")
        size = os.path.getsize(path)
        total += size
        print(f"{fname}.json: {len(FILES[key])} cases, {size / 1024:.0f} KiB")
    print(f"total {total / 1024:.0f} KiB; torch accepted (not errors): {ACCEPTED}")


if __name__ == "__main__":
    main()
