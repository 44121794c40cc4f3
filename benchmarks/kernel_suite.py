"""Per-kernel timings on every VGG16 and AlexNet layer shape, for every backend present.

Backends: "reference" (kernels.reference), "numba" (kernels.cpu), "torch" (the same
operations through torch's CPU ops, when torch is installed) and "cupy" (kernels.gpu, when
CuPy and a device are present). Convolutions report GFLOP/s counted as a direct convolution
(2 * N * C * O * KH * KW * OH * OW, whatever the algorithm: Winograd does fewer
multiplications, which shows as a rate above what the arithmetic alone would allow) and that
rate as a percentage of the float32 GEMM rate measured in the same run. Pooling, ReLU and LRN
are memory-bound; they report GB/s of compulsory traffic (inputs read + outputs written).
"""

import numpy as np

from . import env
from .networks import alexnet_spec, conv_flops, layer_shapes, vgg16_spec


def _conv_cases():
    seen = []
    for net, spec in (("vgg16", vgg16_spec()), ("alexnet", alexnet_spec())):
        for layer, x_shape, y_shape in layer_shapes(spec):
            if layer[0] != "conv":
                continue
            _, name, cin, cout, k, s, p = layer
            key = (x_shape, (cout, cin, k, k), s, p)
            if key in [c[1] for c in seen]:
                seen[[c[1] for c in seen].index(key)][0].append(f"{net}.{name}")
                continue
            seen.append(([f"{net}.{name}"], key, y_shape))
    return seen


def _pool_cases():
    out = []
    for net, spec in (("vgg16", vgg16_spec()), ("alexnet", alexnet_spec())):
        for layer, x_shape, y_shape in layer_shapes(spec):
            if layer[0] == "pool":
                out.append((f"{net}.{layer[1]}", x_shape, layer[2], layer[3], layer[4]))
    return out


ACTIVATION_SHAPES = [
    ("vgg16.relu1", (1, 64, 224, 224)), ("vgg16.relu2", (1, 128, 112, 112)), ("vgg16.relu3", (1, 256, 56, 56)),
    ("vgg16.relu4", (1, 512, 28, 28)), ("vgg16.relu5", (1, 512, 14, 14)), ("alexnet.relu1", (1, 64, 55, 55)),
    ("alexnet.relu2", (1, 192, 27, 27)),
]
LRN_SHAPES = [("alexnet-2012.norm1", (1, 96, 55, 55)), ("alexnet-2012.norm2", (1, 256, 27, 27))]


class TorchKernels:
    """The contract's operations expressed with torch's CPU ops (the peer being compared)."""

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F

    def asarray(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a))

    def conv2d_forward(self, x, w, b, stride, padding, dilation, groups):
        return self.F.conv2d(x, w, b, stride, padding, dilation, groups)

    def conv2d_backward_data(self, gy, w, x_shape, stride, padding, dilation, groups):
        return self.torch.nn.grad.conv2d_input(x_shape, w, gy, stride, padding, dilation, groups)

    def conv2d_backward_weight(self, gy, x, w_shape, stride, padding, dilation, groups):
        return self.torch.nn.grad.conv2d_weight(x, w_shape, gy, stride, padding, dilation, groups)

    def bias_relu_forward(self, x, b):
        return self.torch.relu(x + b[None, :, None, None])

    def relu_forward(self, x):
        return self.torch.relu(x)

    def relu_backward(self, gy, x, rule):
        keep = x > 0
        if rule == "guided":
            keep = keep & (gy > 0)
        return self.torch.where(keep, gy, 0.0)

    def max_pool2d_forward(self, x, kernel_size, stride, padding):
        return self.F.max_pool2d(x, kernel_size, stride, padding, return_indices=True)

    def max_pool2d_backward(self, gy, argmax, x_shape, kernel_size, stride, padding, x=None):
        return self.torch.ops.aten.max_pool2d_with_indices_backward(
            gy, x, list(kernel_size), list(stride), list(padding), [1, 1], False, argmax)

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, count_include_pad):
        return self.F.avg_pool2d(x, kernel_size, stride, padding, False, count_include_pad)

    def avg_pool2d_backward(self, gy, x_shape, kernel_size, stride, padding, count_include_pad, x=None):
        return self.torch.ops.aten.avg_pool2d_backward(
            gy, x, list(kernel_size), list(stride), list(padding), False, count_include_pad, None)

    def lrn_forward(self, x, size, alpha, beta, k):
        return self.F.local_response_norm(x, size, alpha, beta, k)


def available_backends(requested=None):
    """{name: (kernel module or adapter, asarray, sync)} for every backend that imports."""
    import kernels

    found = {}
    for name in ("reference", "numba", "torch", "cupy"):
        if requested and name not in requested:
            continue
        try:
            if name == "torch":
                adapter = TorchKernels()
                found[name] = (adapter, adapter.asarray, None)
            elif name == "cupy":
                import cupy

                if cupy.cuda.runtime.getDeviceCount() < 1:
                    continue
                found[name] = (kernels.load("cupy"), cupy.asarray, cupy.cuda.Device().synchronize)
            else:
                found[name] = (kernels.load(name), np.asarray, None)
        except Exception:  # an absent optional backend is simply not measured
            continue
    return found


def _row(kernel, label, shape, backend, timing, flops=None, nbytes=None, sgemm=None):
    row = {"kernel": kernel, "layer": label, "shape": shape, "backend": backend, **timing}
    if flops:
        row["gflops"] = flops / timing["min_s"] / 1e9
        if sgemm:
            row["pct_sgemm"] = 100.0 * row["gflops"] / sgemm
    if nbytes:
        row["gbytes_per_s"] = nbytes / timing["min_s"] / 1e9
    return row


def run(repeats, backends, sgemm, log=print, reference_repeats=1):
    """Time every kernel case on every backend; return a list of result rows."""
    rng = np.random.default_rng(0)
    rows = []

    def bench(kernel, label, shape, make_call, flops=None, nbytes=None):
        for name, (mod, asarray, sync) in backends.items():
            reps = min(repeats, reference_repeats) if name == "reference" else repeats
            try:
                call = make_call(name, mod, asarray)
            except NotImplementedError:
                continue
            timing = env.measure(call, reps, sync=sync)
            row = _row(kernel, label, shape, name, timing, flops, nbytes, sgemm)
            rows.append(row)
            log(format_row(row))

    for labels, (x_shape, w_shape, s, p), y_shape in _conv_cases():
        label = "+".join(labels)
        x = rng.standard_normal(x_shape, dtype=np.float32)
        w = rng.standard_normal(w_shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(w_shape[1:])))
        gy = rng.standard_normal(y_shape, dtype=np.float32)
        geo = ((s, s), (p, p), (1, 1), 1)
        flops = conv_flops(w_shape[1], w_shape[0], w_shape[2], y_shape[2], y_shape[3])
        shape = f"x{list(x_shape)} w{list(w_shape)} s{s} p{p}"

        def fwd(name, mod, asarray, x=x, w=w, geo=geo):
            xa, wa = asarray(x), asarray(w)
            return lambda: mod.conv2d_forward(xa, wa, None, *geo)

        def bwd_data(name, mod, asarray, gy=gy, w=w, x_shape=x_shape, geo=geo):
            ga, wa = asarray(gy), asarray(w)
            return lambda: mod.conv2d_backward_data(ga, wa, x_shape, *geo)

        def bwd_weight(name, mod, asarray, gy=gy, x=x, w_shape=w_shape, geo=geo):
            ga, xa = asarray(gy), asarray(x)
            return lambda: mod.conv2d_backward_weight(ga, xa, w_shape, *geo)

        bench("conv2d_forward", label, shape, fwd, flops=flops)
        bench("conv2d_backward_data", label, shape, bwd_data, flops=flops)
        bench("conv2d_backward_weight", label, shape, bwd_weight, flops=flops)

    for label, x_shape, k, s, p in _pool_cases():
        x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape).astype(np.float32)
        oh = (x_shape[2] + 2 * p - k) // s + 1
        y_shape = x_shape[:2] + (oh, oh)
        gy = rng.standard_normal(y_shape, dtype=np.float32)
        nbytes_f = 4 * (np.prod(x_shape) + 3 * np.prod(y_shape))  # x read, y + int64 argmax written
        nbytes_b = 4 * (np.prod(x_shape) + 3 * np.prod(y_shape))  # gx written, gy + argmax read
        geo = ((k, k), (s, s), (p, p))
        shape = f"x{list(x_shape)} k{k} s{s} p{p}"

        def mp_f(name, mod, asarray, x=x, geo=geo):
            xa = asarray(x)
            return lambda: mod.max_pool2d_forward(xa, *geo)

        def mp_b(name, mod, asarray, x=x, gy=gy, geo=geo, x_shape=x_shape):
            xa = asarray(x)
            arg = mod.max_pool2d_forward(xa, *geo)[1]
            ga = asarray(gy)
            if name == "torch":
                return lambda: mod.max_pool2d_backward(ga, arg, x_shape, *geo, x=xa)
            return lambda: mod.max_pool2d_backward(ga, arg, x_shape, *geo)

        bench("max_pool2d_forward", label, shape, mp_f, nbytes=nbytes_f)
        bench("max_pool2d_backward", label, shape, mp_b, nbytes=nbytes_b)
        if k == 3:  # AlexNet's overlapping windows: the interesting case for average pooling too
            def ap_f(name, mod, asarray, x=x, geo=geo):
                xa = asarray(x)
                return lambda: mod.avg_pool2d_forward(xa, *geo, True)

            def ap_b(name, mod, asarray, x=x, gy=gy, geo=geo, x_shape=x_shape):
                ga = asarray(gy)
                if name == "torch":
                    xa = asarray(x)
                    return lambda: mod.avg_pool2d_backward(ga, x_shape, *geo, True, x=xa)
                return lambda: mod.avg_pool2d_backward(ga, x_shape, *geo, True)

            bench("avg_pool2d_forward", label, shape, ap_f, nbytes=4 * (np.prod(x_shape) + np.prod(y_shape)))
            bench("avg_pool2d_backward", label, shape, ap_b, nbytes=4 * (np.prod(x_shape) + np.prod(y_shape)))

    for label, x_shape in ACTIVATION_SHAPES:
        x = rng.standard_normal(x_shape, dtype=np.float32)
        gy = rng.standard_normal(x_shape, dtype=np.float32)
        b = rng.standard_normal(x_shape[1], dtype=np.float32)
        size = 4 * int(np.prod(x_shape))
        shape = f"x{list(x_shape)}"

        def relu_f(name, mod, asarray, x=x):
            xa = asarray(x)
            return lambda: mod.relu_forward(xa)

        def bias_relu(name, mod, asarray, x=x, b=b):
            xa, ba = asarray(x), asarray(b)
            return lambda: mod.bias_relu_forward(xa, ba)

        def relu_b(rule):
            def make(name, mod, asarray, x=x, gy=gy):
                xa, ga = asarray(x), asarray(gy)
                return lambda: mod.relu_backward(ga, xa, rule)
            return make

        bench("relu_forward", label, shape, relu_f, nbytes=2 * size)
        bench("bias_relu_forward", label, shape, bias_relu, nbytes=2 * size)
        bench("relu_backward[standard]", label, shape, relu_b("standard"), nbytes=3 * size)
        bench("relu_backward[guided]", label, shape, relu_b("guided"), nbytes=3 * size)

    for label, x_shape in LRN_SHAPES:
        x = rng.standard_normal(x_shape, dtype=np.float32)
        gy = rng.standard_normal(x_shape, dtype=np.float32)
        size = 4 * int(np.prod(x_shape))
        shape = f"x{list(x_shape)} size5"

        def lrn_f(name, mod, asarray, x=x):
            xa = asarray(x)
            return lambda: mod.lrn_forward(xa, 5, 1e-4, 0.75, 2.0)

        def lrn_b(name, mod, asarray, x=x, gy=gy):
            if name == "torch":
                raise NotImplementedError  # torch has no standalone LRN backward op
            xa, ga = asarray(x), asarray(gy)
            ya = mod.lrn_forward(xa, 5, 1e-4, 0.75, 2.0)
            return lambda: mod.lrn_backward(ga, xa, ya, 5, 1e-4, 0.75, 2.0)

        bench("lrn_forward", label, shape, lrn_f, nbytes=2 * size)
        bench("lrn_backward", label, shape, lrn_b, nbytes=4 * size)
    return rows


def format_row(row):
    rate = f"{row['gflops']:8.1f} GFLOP/s {row.get('pct_sgemm', 0):5.0f}% sgemm" if "gflops" in row else (
        f"{row['gbytes_per_s']:8.1f} GB/s" + " " * 17 if "gbytes_per_s" in row else " " * 33)
    return (f"{row['kernel']:<24} {row['layer'][:34]:<34} {row['backend']:<9} "
            f"{row['min_s'] * 1e3:9.2f} ms {rate}")
