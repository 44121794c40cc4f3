"""VGG16 and AlexNet as layer tables, run through a kernel backend or through torch.

``KernelNet`` chains the contract's kernels exactly as a framework would for the workload
this project exists for: a forward pass, then the backward pass to the input image with the
weights frozen (no weight gradients), ReLUs under a chosen backward rule. Fully connected
layers are one ``matmul`` each (the backend's). ``torch_model`` builds the same network
with the same weights in torch, for the peer timing; ``minigrad_model`` uses
``minigrad.models`` when that package provides the architecture.

Weights are random (He-normal, seeded), so no download is needed; the timings do not depend
on the values, and He scaling keeps activations at a realistic magnitude through the depth,
which matters for the Winograd error figures.
"""

import numpy as np

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_spec():
    """VGG16 (Simonyan & Zisserman 2015, configuration D) at 224x224: its layer table."""
    spec, cin, block, idx = [], 3, 1, 1
    for v in VGG16_CFG:
        if v == "M":
            spec.append(("pool", f"pool{block}", 2, 2, 0))
            block, idx = block + 1, 1
        else:
            spec.append(("conv", f"conv{block}_{idx}", cin, v, 3, 1, 1))
            cin, idx = v, idx + 1
    spec += [("fc", "fc6", 512 * 7 * 7, 4096, True), ("fc", "fc7", 4096, 4096, True), ("fc", "fc8", 4096, 1000, False)]
    return spec


def alexnet_spec():
    """torchvision's AlexNet (one tower, no groups, no LRN) at 224x224: its layer table."""
    return [
        ("conv", "conv1", 3, 64, 11, 4, 2), ("pool", "pool1", 3, 2, 0),
        ("conv", "conv2", 64, 192, 5, 1, 2), ("pool", "pool2", 3, 2, 0),
        ("conv", "conv3", 192, 384, 3, 1, 1), ("conv", "conv4", 384, 256, 3, 1, 1),
        ("conv", "conv5", 256, 256, 3, 1, 1), ("pool", "pool5", 3, 2, 0),
        ("fc", "fc6", 256 * 6 * 6, 4096, True), ("fc", "fc7", 4096, 4096, True), ("fc", "fc8", 4096, 1000, False),
    ]


NETWORKS = {"vgg16": vgg16_spec, "alexnet": alexnet_spec}


def layer_shapes(spec, size=224, batch=1):
    """Yield (layer, input shape, output shape) for every conv and pool of ``spec``."""
    c, h = 3, size
    for layer in spec:
        if layer[0] == "conv":
            _, name, cin, cout, k, s, p = layer
            oh = (h + 2 * p - k) // s + 1
            yield layer, (batch, cin, h, h), (batch, cout, oh, oh)
            c, h = cout, oh
        elif layer[0] == "pool":
            _, name, k, s, p = layer
            oh = (h + 2 * p - k) // s + 1
            yield layer, (batch, c, h, h), (batch, c, oh, oh)
            h = oh


def conv_flops(cin, cout, k, out_h, out_w, batch=1):
    """Multiply-adds x 2 of a direct convolution (the convention for GFLOP/s, whatever the algorithm)."""
    return 2.0 * batch * cin * cout * k * k * out_h * out_w


def network_flops(spec, size=224):
    fwd = bwd = 0.0
    for layer, x_shape, y_shape in layer_shapes(spec, size):
        if layer[0] == "conv":
            f = conv_flops(layer[2], layer[3], layer[4], y_shape[2], y_shape[3])
            fwd += f
            bwd += f
    for layer in spec:
        if layer[0] == "fc":
            fwd += 2.0 * layer[2] * layer[3]
            bwd += 2.0 * layer[2] * layer[3]
    return fwd, bwd


def make_weights(spec, dtype=np.float32, seed=0):
    """He-normal weights and small random biases for every conv and fc layer of ``spec``."""
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in spec:
        if layer[0] == "conv":
            _, name, cin, cout, k, s, p = layer
            fan_in = cin * k * k
            w = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        elif layer[0] == "fc":
            _, name, fin, fout, relu = layer
            w = rng.standard_normal((fout, fin), dtype=np.float32) * np.float32(np.sqrt(2.0 / fin))
        else:
            continue
        b = rng.standard_normal(w.shape[0], dtype=np.float32) * np.float32(0.01)
        weights[name] = (np.ascontiguousarray(w, dtype=dtype), np.ascontiguousarray(b, dtype=dtype))
    return weights


class KernelNet:
    """A network executed directly on a kernel module (``kernels.load(name)``).

    ``forward`` runs each conv with its bias and ReLU fused (``relu=True``) and keeps what the
    backward pass needs (ReLU masks, pool argmax indices); ``backward_to_input`` propagates a
    gradient from the logits to the image through frozen weights: conv2d_backward_data only,
    never conv2d_backward_weight."""

    def __init__(self, spec, weights, kernels, conv_algorithm=None):
        self.spec, self.weights, self.k = spec, weights, kernels
        self.saved = []
        if conv_algorithm is None:
            self.conv_forward, self.conv_backward_data = kernels.conv2d_forward, kernels.conv2d_backward_data
        else:  # numba backend only: force "winograd", "direct" or "im2col"
            from kernels.cpu import conv

            self.conv_forward = lambda *a, **k: conv.forward(*a, algorithm=conv_algorithm, **k)
            self.conv_backward_data = lambda *a: conv.backward_data(*a, algorithm=conv_algorithm)

    def forward(self, x, keep=True):
        k = self.k
        self.saved = []
        for layer in self.spec:
            kind, name = layer[0], layer[1]
            if kind == "conv":
                _, _, cin, cout, ks, s, p = layer
                w, b = self.weights[name]
                shape = x.shape
                x = self.conv_forward(x, w, b, (s, s), (p, p), (1, 1), 1, relu=True)
                if keep:
                    self.saved.append(("conv", layer, shape, ~(x <= 0)))
            elif kind == "pool":
                _, _, ks, s, p = layer
                shape = x.shape
                x, arg = k.max_pool2d_forward(x, (ks, ks), (s, s), (p, p))
                if keep:
                    self.saved.append(("pool", layer, shape, arg))
            else:
                _, _, fin, fout, relu = layer
                w, b = self.weights[name]
                shape = x.shape
                x = k.matmul(x.reshape(x.shape[0], -1), w.T) + b
                if relu:
                    x = np.maximum(x, 0)
                if keep:
                    self.saved.append(("fc", layer, shape, ~(x <= 0)))
        return x

    def backward_to_input(self, gy, rule="standard"):
        k = self.k
        for kind, layer, shape, kept in reversed(self.saved):
            if kind == "fc":
                w, _ = self.weights[layer[1]]
                if layer[4]:
                    gy = k.relu_backward(gy, kept, rule) if rule else gy
                gy = k.matmul(gy, w).reshape(shape)
            elif kind == "pool":
                _, _, ks, s, p = layer
                gy = k.max_pool2d_backward(np.ascontiguousarray(gy), kept, shape, (ks, ks), (s, s), (p, p))
            else:
                _, _, cin, cout, ks, s, p = layer
                w, _ = self.weights[layer[1]]
                gy = k.relu_backward(gy, kept, rule)
                gy = self.conv_backward_data(gy, w, shape, (s, s), (p, p), (1, 1), 1)
        self.saved = []
        return gy


def torch_model(spec, weights):
    """The same network in torch (CPU, eval mode, frozen parameters), from the same weights."""
    import torch
    from torch import nn

    layers, head = [], []
    for layer in spec:
        if layer[0] == "conv":
            _, name, cin, cout, k, s, p = layer
            conv = nn.Conv2d(cin, cout, k, stride=s, padding=p)
            w, b = weights[name]
            conv.weight.data = torch.from_numpy(np.asarray(w, np.float32).copy())
            conv.bias.data = torch.from_numpy(np.asarray(b, np.float32).copy())
            layers += [conv, nn.ReLU()]
        elif layer[0] == "pool":
            _, name, k, s, p = layer
            layers.append(nn.MaxPool2d(k, s, p))
        else:
            _, name, fin, fout, relu = layer
            fc = nn.Linear(fin, fout)
            w, b = weights[name]
            fc.weight.data = torch.from_numpy(np.asarray(w, np.float32).copy())
            fc.bias.data = torch.from_numpy(np.asarray(b, np.float32).copy())
            head += [fc] + ([nn.ReLU()] if relu else [])
    model = nn.Sequential(*layers, nn.Flatten(), *head).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model


def torch_twin(model, relu=None):
    """A ``minigrad`` layered model (``model.layers()``: VGG, AlexNet, fashion-vgg) as a
    ``torch.nn.Sequential`` with copies of its weights, in the model's training mode.

    ``relu`` makes each ReLU module (default ``torch.nn.ReLU``); tests pass one whose
    backward follows a guided-backprop or deconvnet rule."""
    import torch
    from torch import nn

    relu = relu or nn.ReLU
    layers = []
    for _, m in model.layers():
        kind = type(m).__name__
        if kind == "Conv2d":
            layer = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
        elif kind == "Linear":
            layer = nn.Linear(m.in_features, m.out_features)
        elif kind == "ReLU":
            layers.append(relu())
            continue
        elif kind == "MaxPool2d":
            layers.append(nn.MaxPool2d(m.kernel_size, m.stride, m.padding))
            continue
        elif kind == "AdaptiveAvgPool2d":
            layers.append(nn.AdaptiveAvgPool2d(m.output_size))
            continue
        elif kind == "Flatten":
            layers.append(nn.Flatten())
            continue
        elif kind == "Dropout":
            layers.append(nn.Dropout(m.p))
            continue
        else:
            raise ValueError(f"no torch equivalent for layer {kind}")
        layer.weight.data = torch.from_numpy(np.array(m.weight.data))
        layer.bias.data = torch.from_numpy(np.array(m.bias.data))
        layers.append(layer)
    return nn.Sequential(*layers).train(model.training)
