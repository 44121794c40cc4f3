"""Direct convolution for stride-1 float32 layers, on a register-blocked FMA micro-kernel.

Why: im2col + BLAS writes a column matrix KH*KW times the input's size and reads it back
from memory (fashion-vgg's conv2_1 at batch 128: 29 MB per call), and BLAS's products of one
image (64 x 288 by 196) run below its peak. Here no column matrix exists: the micro-kernel
reads the input planes in place, so a training batch's 3x3 layers run 2-2.5x faster.

Layout ("extended rows"): each image's channels are copied, zero-padded, one after another
into one flat array (plane = Hp x Wp, Hp = H + 2*ph, Wp = W + 2*pw). Output pixel (i, j) is
computed at m = i*Wp + j, and tap (c, p, q) of every output pixel then reads the input at
m + c*Hp*Wp + p*Wp + q: for a run of consecutive m, one contiguous run of the input. So the
micro-kernel's "B" operand is the input itself at a per-tap offset (``taps``), with no
copy. The price: the Wp - OW columns past each output row are computed and dropped (14%
for a 14x14 image with padding 1).

Micro-kernel (``_tile``, written in LLVM IR through ``numba.extending.intrinsic``): ROWS
output channels by VECTORS vectors of LANES output pixels, kept in registers for the whole
sum over the C*KH*KW taps, which runs as a chain of fused multiply-adds: per tap one weight
broadcast per channel and one vector load per VECTORS. Numba cannot express this itself:
its arrays may alias, so LLVM keeps loop accumulators in memory (a loop in plain Numba
reached 6 to 23 GFLOP/s here, this kernel 240 in cache, the core's peak). The layout is that
of BLIS's micro-kernel (Van Zee & van de Geijn 2015); the weights are packed once into
panels of ROWS channels, tap-major, and cached like Winograd's transforms.

Exactness: every output pixel is the same chain of FMAs over the taps in the same order,
starting from zero, whatever its position in a tile or its image's place in the batch. So an
image's result never depends on its batch, and pixels with bitwise-equal receptive fields get
bitwise-equal outputs with no further step (max-pool ties break as in exact arithmetic).

The data gradient of a stride-1 convolution is this same convolution of gy with the kernel
flipped and its channels swapped, padded by KH-1-ph (``_common.data_gradient_kernel``).
"""

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _common
from ._workspace import scratch, weight_cache


def _register_block():
    """(lanes, rows, vectors): the vector width of this CPU and a block of rows x vectors
    accumulators that, with the loaded vectors and a broadcast, fits its vector registers."""
    try:
        import llvmlite.binding as llvm

        avx512 = bool(llvm.get_host_cpu_features().get("avx512f", False))
    except (ImportError, RuntimeError):  # features unknown: assume 16 registers of 8 floats (AVX2)
        avx512 = False
    return (16, 8, 2) if avx512 else (8, 4, 3)


LANES, ROWS, VECTORS = _register_block()
TILE = LANES * VECTORS  # output pixels per micro-tile


class _IR:
    """The few LLVM IR pieces both micro-kernels are built from."""

    def __init__(self, context, builder, signature, args):
        self.builder = builder
        self.i64 = ir.IntType(64)
        self.vec = ir.VectorType(ir.FloatType(), LANES)
        self.fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(self.vec, [self.vec] * 3),
                                                  f"llvm.fma.v{LANES}f32")
        self._arrays = {i: context.make_array(t)(context, builder, v).data
                        for i, (t, v) in enumerate(zip(signature.args, args)) if isinstance(t, types.Array)}

    def const(self, n):
        return ir.Constant(self.i64, n)

    def pointer(self, arg, *offsets):
        """&array_arg[sum(offsets)] for the array in argument position ``arg``."""
        p = self._arrays[arg]
        for offset in offsets:
            p = self.builder.gep(p, [offset if isinstance(offset, ir.Value) else self.const(offset)])
        return p

    def load_vector(self, pointer):
        return self.builder.load(self.builder.bitcast(pointer, self.vec.as_pointer()), align=4)

    def store_vector(self, value, pointer):
        self.builder.store(value, self.builder.bitcast(pointer, self.vec.as_pointer()), align=4)

    def broadcast(self, pointer):
        i32 = ir.IntType(32)
        undef = ir.Constant(self.vec, ir.Undefined)
        scalar = self.builder.insert_element(undef, self.builder.load(pointer), ir.Constant(i32, 0))
        return self.builder.shuffle_vector(scalar, undef, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))

    def rank1_updates(self, count, initial, operands):
        """acc[r*VECTORS + v] += a_r * b_v for k = 0 .. count - 1, where ``operands(k)`` emits the
        loads of step k and returns (ROWS broadcast scalars a_r, VECTORS vectors b_v): a loop
        whose ROWS x VECTORS accumulators are SSA values, so LLVM keeps them in registers.
        Returns the accumulators after the loop."""
        builder = self.builder
        entry = builder.block
        loop = builder.append_basic_block("rank1")
        done = builder.append_basic_block("rank1.done")
        builder.cbranch(builder.icmp_signed(">", count, self.const(0)), loop, done)
        builder.position_at_end(loop)
        k = builder.phi(self.i64)
        k.add_incoming(self.const(0), entry)
        acc = []
        for value in initial:
            phi = builder.phi(self.vec)
            phi.add_incoming(value, entry)
            acc.append(phi)
        scalars, vectors = operands(k)
        summed = [builder.call(self.fma, [scalars[r], vectors[v], acc[r * VECTORS + v]])
                  for r in range(ROWS) for v in range(VECTORS)]
        k_next = builder.add(k, self.const(1))
        k.add_incoming(k_next, loop)
        for phi, value in zip(acc, summed):
            phi.add_incoming(value, loop)
        builder.cbranch(builder.icmp_signed("<", k_next, count), loop, done)
        builder.position_at_end(done)
        final = []
        for before, after in zip(initial, summed):
            phi = builder.phi(self.vec)
            phi.add_incoming(before, entry)
            phi.add_incoming(after, loop)
            final.append(phi)
        return final

    def tile_pointers(self, arg, start, stride):
        """&out[start + r*stride + v*LANES] for r < ROWS, v < VECTORS, in accumulator order."""
        return [self.pointer(arg, start, self.builder.mul(stride, self.const(r)), v * LANES)
                for r in range(ROWS) for v in range(VECTORS)]


_FLOATS = types.Array(types.float32, 1, "C")
_INTS = types.Array(types.int64, 1, "C")


@intrinsic
def _tile(typingctx, panel, panel_start, planes, planes_start, taps, out, out_start, out_stride, n_taps):
    """out[out_start + r*out_stride + j] = sum over k < n_taps of
    panel[panel_start + k*ROWS + r] * planes[planes_start + taps[k] + j], for r < ROWS and
    j < TILE, summed in k order by fused multiply-adds from zero."""
    if (panel, planes, taps, out) != (_FLOATS, _FLOATS, _INTS, _FLOATS):
        return None
    sig = types.void(panel, types.intp, planes, types.intp, taps, out, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        e = _IR(context, builder, signature, args)
        _, panel0, _, planes0, _, _, out0, stride, count = args

        def operands(k):  # tap k: the weights of ROWS channels, TILE pixels of the input
            run = e.pointer(2, planes0, builder.load(e.pointer(4, k)))
            row = e.pointer(0, panel0, builder.mul(k, e.const(ROWS)))
            return ([e.broadcast(builder.gep(row, [e.const(r)])) for r in range(ROWS)],
                    [e.load_vector(builder.gep(run, [e.const(v * LANES)])) for v in range(VECTORS)])

        zero = ir.Constant(e.vec, [0.0] * LANES)
        final = e.rank1_updates(count, [zero] * (ROWS * VECTORS), operands)
        for value, where in zip(final, e.tile_pointers(5, out0, stride)):
            e.store_vector(value, where)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_weight_grad(typingctx, planes, planes_start, row_taps, grads, grads_start, grads_step, out, out_start,
                      out_stride, n_pixels):
    """out[out_start + r*out_stride + j] += sum over m < n_pixels of
    planes[planes_start + row_taps[r] + m] * grads[grads_start + m*grads_step + j], for r < ROWS
    (ROWS taps) and j < TILE (output channels), by fused multiply-adds in m order."""
    if (planes, row_taps, grads, out) != (_FLOATS, _INTS, _FLOATS, _FLOATS):
        return None
    sig = types.void(planes, types.intp, row_taps, grads, types.intp, types.intp, out, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        e = _IR(context, builder, signature, args)
        _, planes0, _, _, grads0, step, _, out0, stride, count = args
        rows = [e.pointer(0, planes0, builder.load(e.pointer(2, r))) for r in range(ROWS)]

        def operands(m):  # pixel m: ROWS taps of the input, TILE channels of the gradient
            grad = e.pointer(3, grads0, builder.mul(m, step))
            return ([e.broadcast(builder.gep(row, [m])) for row in rows],
                    [e.load_vector(builder.gep(grad, [e.const(v * LANES)])) for v in range(VECTORS)])

        where = e.tile_pointers(6, out0, stride)
        final = e.rank1_updates(count, [e.load_vector(p) for p in where], operands)
        for value, p in zip(final, where):
            e.store_vector(value, p)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _pad_plane(src, out, at, ph, pw):
    """out[at:] = the plane src (H, W) zero-padded to (H + 2*ph) x (W + 2*pw), row-major."""
    height, width = src.shape
    wp = width + 2 * pw
    out[at:at + ph * wp + pw] = 0
    for h in range(height):
        start = at + (ph + h) * wp + pw
        out[start:start + width] = src[h]
        out[start + width:start + width + 2 * pw] = 0
    out[at + (ph + height) * wp + pw:at + (height + 2 * ph) * wp] = 0


@njit(parallel=True, cache=True)
def _pad(x, n0, planes, ph, pw):
    """planes[s] = image n0 + s of x (N, C, H, W), each channel zero-padded (``_pad_plane``)
    and the channels laid one after another; the slack after the last channel is zeroed too."""
    n_ch, plane = x.shape[1], (x.shape[2] + 2 * ph) * (x.shape[3] + 2 * pw)
    for job in prange(planes.shape[0] * n_ch):
        jb = np.int64(job)
        s, c = jb // n_ch, jb % n_ch
        _pad_plane(x[n0 + s, c], planes[s], c * plane, ph, pw)
        if c == n_ch - 1:
            planes[s, n_ch * plane:] = 0


@njit(cache=True, inline="always")
def _pad_image(x, n, out, ph, pw):
    """out = image n of x laid out as one of ``_pad``'s planes[s], on the calling thread."""
    n_ch, plane = x.shape[1], (x.shape[2] + 2 * ph) * (x.shape[3] + 2 * pw)
    for c in range(n_ch):
        _pad_plane(x[n, c], out, c * plane, ph, pw)
    out[n_ch * plane:] = 0


@njit(cache=True, inline="always")
def _store(tile, y, n, o0, m0, wp, b, relu):
    """Write a micro-tile's outputs (ROWS channels from o0 by the TILE extended pixels from
    m0) into y[n], adding the bias and applying ReLU (NaN passes, as in ``elementwise``);
    the extended rows' extra columns and the panel's padding channels are dropped."""
    n_out, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    i, j0, t = m0 // wp, m0 % wp, 0
    while t < TILE and i < oh:
        run = min(TILE - t, wp - j0)  # this output row's share of the tile
        valid = max(0, min(run, ow - j0))
        for r in range(min(ROWS, n_out - o0)):
            bias = b[o0 + r]
            src = tile[r * TILE + t:r * TILE + t + valid]
            dst = y[n, o0 + r, i, j0:j0 + valid]
            for jj in range(valid):
                v = src[jj] + bias
                dst[jj] = 0 if relu and v <= 0 else v
        t += run
        i += 1
        j0 = 0


@njit(cache=True, inline="always")
def _convolve_tile(image, n, t, panels, taps, y, wp, b, relu, tile):
    """Extended pixels t*TILE .. (t + 1)*TILE - 1 of output image n, every panel: the micro-tile
    into ``tile`` (ROWS x TILE scratch), then stored into y with the bias and ReLU (``_store``)."""
    n_taps = taps.shape[0]
    for panel in range(panels.shape[0] // (n_taps * ROWS)):
        _tile(panels, panel * n_taps * ROWS, image, t * TILE, taps, tile, 0, TILE, n_taps)
        _store(tile, y, n, panel * ROWS, t * TILE, wp, b, relu)


@njit(parallel=True, cache=True)
def _convolve(planes, n0, panels, taps, y, wp, b, relu):
    """y[n0 + s] for every image s of ``planes`` (``_pad``), one job per (image, run of TILE
    extended pixels): for few images (one large image has many tiles)."""
    tiles = (y.shape[2] * wp + TILE - 1) // TILE
    for job in prange(planes.shape[0] * tiles):
        jb = np.int64(job)
        s, t = jb // tiles, jb % tiles
        _convolve_tile(planes[s], n0 + s, t, panels, taps, y, wp, b, relu, np.empty(ROWS * TILE, np.float32))


@njit(parallel=True, cache=True)
def _pad_and_convolve(x, n0, planes, panels, taps, y, wp, b, relu, ph, pw):
    """The same for many images, one job per image: it pads its image (``_pad_image``) and
    convolves it at once, while the padded copy is in cache, in a single parallel region."""
    tiles = (y.shape[2] * wp + TILE - 1) // TILE
    for s in prange(planes.shape[0]):
        _pad_image(x, n0 + s, planes[s], ph, pw)
        tile = np.empty(ROWS * TILE, np.float32)
        for t in range(tiles):
            _convolve_tile(planes[s], n0 + s, t, panels, taps, y, wp, b, relu, tile)


def applies(w_shape, stride, padding, dilation, groups, dtype):
    """Whether this path computes the convolution (and its data gradient): float32, stride 1,
    dilation 1, one group, padding below the kernel size (so the data gradient is again a
    convolution with non-negative padding), and Numba's JIT on."""
    kh, kw = w_shape[2], w_shape[3]
    return (np.dtype(dtype) == np.float32 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1 and padding[0] < kh and padding[1] < kw
            and not numba.config.DISABLE_JIT)  # the micro-kernels exist only as compiled code


def _pack(w):
    """w (O, C, KH, KW) as panels of ROWS output channels, tap-major ((c*KH + p)*KW + q), the
    last panel padded with zero channels: a flat float32 array."""
    o = w.shape[0]
    rows = (o + ROWS - 1) // ROWS * ROWS
    padded = np.zeros((rows, w[0].size), np.float32)
    padded[:o] = w.reshape(o, -1)
    return np.ascontiguousarray(padded.reshape(rows // ROWS, ROWS, -1).transpose(0, 2, 1)).reshape(-1)


def packed_weights(w, kind):
    """The packed panels of w ("forward") or of its ``_common.data_gradient_kernel``
    ("backward"), cached per weight array like Winograd's transforms (checked against in-place
    updates)."""
    def make(a):
        return _pack(a if kind == "forward" else _common.data_gradient_kernel(a))

    return weight_cache.get(w, "direct " + kind, make)


# Images are padded a block at a time, so that the padded copy stays bounded for large batches.
BLOCK_BYTES = 16 * 2**20


def _layout(x_shape, kernel_hw, padding):
    """(wp, oh, ow, image_length, taps) of the extended-rows layout of x (N, C, H, W): the
    padded width, the output size, the floats per image (its C padded planes, then slack for
    the last micro-tile's reads past them) and every tap's offset, (c*KH + p)*KW + q order."""
    _, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel_hw, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    taps = (np.arange(c)[:, None, None] * (hp * wp) + np.arange(kh)[:, None] * wp + np.arange(kw)).reshape(-1)
    return wp, hp - kh + 1, wp - kw + 1, c * hp * wp + TILE + kw, taps.astype(np.int64)


def convolve(x, panels, n_out, kernel_hw, padding, b=None, relu=False):
    """y (N, n_out, OH, OW), the stride-1 cross-correlation of x (N, C, H, W) float32 with the
    kernel packed in ``panels`` (``packed_weights``), padded by ``padding``, plus b, then
    max(., 0) if ``relu``."""
    n = x.shape[0]
    wp, oh, ow, image_length, taps = _layout(x.shape, kernel_hw, padding)
    b = np.zeros(n_out, np.float32) if b is None else b
    y = np.empty((n, n_out, oh, ow), np.float32)
    step = max(1, BLOCK_BYTES // (4 * image_length))
    for n0 in range(0, n, step):
        planes = scratch("direct planes", (min(step, n - n0), image_length), np.float32)
        with _common.threads_for(y[n0:n0 + step].size * taps.size // 8):
            if planes.shape[0] >= 2 * numba.get_num_threads():  # the same bits either way
                _pad_and_convolve(x, n0, planes, panels, taps, y, wp, b, relu, *padding)
            else:
                _pad(x, n0, planes, *padding)
                _convolve(planes, n0, panels, taps, y, wp, b, relu)
    return y


@njit(cache=True, inline="always")
def _gather_rows(gy, n, i0, i1, grads, wp):
    """grads[(i - i0)*wp + j, o] = gy[n, o, i, j] for output rows i0 <= i < i1 and j < OW; zero
    for the extended rows' extra columns and the padding channels o >= O: each pixel's
    channels contiguous, the weight gradient's vector operand."""
    n_out, ow = gy.shape[1], gy.shape[3]
    for i in range(i0, i1):
        rows = grads[(i - i0) * wp:(i - i0 + 1) * wp]
        rows[:] = 0
        for o in range(n_out):
            src = gy[n, o, i]
            for j in range(ow):
                rows[j, o] = src[j]


@njit(parallel=True, cache=True)
def _weight_grad_parts(x, gy, items, bounds, planes, grads, row_taps, parts, wp, ph, pw):
    """parts[t, k, o] = sum over the work items (image s, output rows i0 .. i1 - 1) numbered
    bounds[t] .. bounds[t + 1] - 1 of sum over their extended pixels m of
    xpad[s, row_taps[k] + m] * gy_ext[s, m, o]: one partial sum per thread, each thread
    padding its images (``_pad_image``) and gathering their gradients (``_gather_rows``) into
    its own buffers as it goes."""
    n_rows, width = parts.shape[1], parts.shape[2]
    for t in prange(parts.shape[0]):
        part, image, g = parts[t].reshape(n_rows * width), planes[t], grads[t]
        part[:] = 0
        padded = -1
        for item in range(bounds[t], bounds[t + 1]):
            s, i0, i1 = items[item, 0], items[item, 1], items[item, 2]
            if s != padded:
                _pad_image(x, s, image, ph, pw)
                padded = s
            _gather_rows(gy, s, i0, i1, g, wp)
            flat = g.reshape(g.shape[0] * width)
            for r0 in range(0, n_rows, ROWS):
                for o0 in range(0, width, TILE):
                    _tile_weight_grad(image, i0 * wp, row_taps[r0:r0 + ROWS], flat, o0, width, part, r0 * width + o0,
                                      width, (i1 - i0) * wp)


def weight_grad(gy, x, w_shape, padding):
    """The gradient of sum(gy * conv(x, w)) with respect to w (O, C, KH, KW), for the stride-1
    convolution padded by ``padding``: per tap and output channel, the sum over every image
    and pixel of input times gradient, with the taps as the micro-kernel's rows and the output
    channels as its vectors (``_tile_weight_grad``). The work -- whole images, or row ranges
    of each when there are fewer images than threads -- is cut into one contiguous share per
    thread, whose partial sums are added in thread order: the result depends on the batch
    size and the thread count, never on which thread runs first."""
    n, o = x.shape[0], w_shape[0]
    wp, oh, _, image_length, taps = _layout(x.shape, w_shape[2:], padding)
    n_taps = taps.size
    row_taps = np.zeros((n_taps + ROWS - 1) // ROWS * ROWS, np.int64)  # padding rows read tap 0, then dropped
    row_taps[:n_taps] = taps
    width = (o + TILE - 1) // TILE * TILE
    with _common.threads_for(n * row_taps.size * oh * wp * width // 8):
        threads = numba.get_num_threads()
        cuts = min(oh, -(-threads // n))  # row ranges per image
        items = np.array([(s, oh * k // cuts, oh * (k + 1) // cuts) for s in range(n) for k in range(cuts)], np.int64)
        shares = min(threads, len(items))
        bounds = np.array(_common.even_cuts(len(items), shares), np.int64)
        parts = np.empty((shares, row_taps.size, width), np.float32)
        planes = scratch("direct planes", (shares, image_length), np.float32)
        grads = scratch("direct grads", (shares, -(-oh // cuts) * wp, width), np.float32)
        _weight_grad_parts(x, gy, items, bounds, planes, grads, row_taps, parts, wp, *padding)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return np.ascontiguousarray(total[:n_taps, :o].T).reshape(w_shape)
