"""The cost twins: every layer and block of scaler.layers and scaler.blocks followed on shapes alone, with no
torch, so that the estimator sweeps thousands of networks in milliseconds and imports nothing heavy.

A twin follows its layer's forward pass on an `Act` (a shape, and whether autograd already holds
its storage) and adds to a `Cost` what the layer costs: parameters, multiply-adds, fvcore's count,
output elements, and the elements autograd saves for backward. The saving rules are PyTorch's, as
measured with saved-tensor hooks: convolutions, linears, norms and GELU save their input; ReLU and
sigmoid their result; in-place SiLU and ReLU6 save a copy of their input; max-pool saves its input
and int64 indices; multiplying by a random mask saves the mask.

Each twin is named after its module (`conv_norm_act_cost` for `ConvNormAct`, `mbconv_cost` for `MBConv`);
tests hold every twin to what the built module measures (fvcore, FlopCounterMode, saved-tensor hooks).
"""

from __future__ import annotations

from scaler.plan import squeeze_channels


class Act:
    """An activation tensor per image: channels x height x width, and whether a saved tensor holds it."""

    __slots__ = ("channels", "height", "width", "elements", "saved")

    def __init__(self, channels: int, height: int, width: int):
        self.channels, self.height, self.width = channels, height, width
        self.elements = channels * height * width
        self.saved = False


class Cost:
    """What a part of a network costs. Memory counts are elements per image in the training dtype,
    except `saved_fixed` (per-channel statistics, the same for any batch) and `saved_int64`."""

    __slots__ = ("params", "macs", "fvcore_flops", "activations", "saved", "saved_fixed", "saved_int64", "largest")

    def __init__(self):
        self.params = self.macs = self.fvcore_flops = self.activations = 0
        self.saved = self.saved_fixed = self.saved_int64 = self.largest = 0

    def save(self, act: Act) -> None:
        """Autograd keeps `act`'s storage; counted once however many ops save it."""
        if not act.saved:
            act.saved = True
            self.saved += act.elements

    def output(self, channels: int, height: int, width: int) -> Act:
        """A new tensor; the largest one bounds the transient memory of the backward pass."""
        act = Act(channels, height, width)
        if act.elements > self.largest:
            self.largest = act.elements
        return act

    def add(self, other: Cost, times: int = 1) -> None:
        self.params += times * other.params
        self.macs += times * other.macs
        self.fvcore_flops += times * other.fvcore_flops
        self.activations += times * other.activations
        self.saved += times * other.saved
        self.saved_fixed += times * other.saved_fixed
        self.saved_int64 += times * other.saved_int64
        self.largest = max(self.largest, other.largest)


def activation_cost(cost: Cost, x: Act, kind: str) -> Act:
    if kind == "relu":
        cost.save(x)
        return x
    if kind == "gelu":
        cost.save(x)
        return cost.output(x.channels, x.height, x.width)
    cost.saved += x.elements
    return x


def conv_cost(cost: Cost, x: Act, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False,
              padding: int | None = None) -> Act:
    padding = (kernel - 1) // 2 if padding is None else padding
    height = (x.height + 2 * padding - kernel) // stride + 1
    width = (x.width + 2 * padding - kernel) // stride + 1
    per_output = x.channels // groups * kernel * kernel
    cost.params += cout * per_output + (cout if bias else 0)
    out = cost.output(cout, height, width)
    cost.macs += out.elements * per_output
    cost.fvcore_flops += out.elements * per_output
    cost.activations += out.elements
    if not x.saved:  # cost.save(x), inline: this is the estimator's hottest line
        x.saved = True
        cost.saved += x.elements
    return out


def linear_cost(cost: Cost, x: Act, features: int) -> Act:
    """A linear layer over the channels of every position (ConvNeXt's MLP) or of a pooled vector."""
    positions = x.height * x.width
    cost.params += x.channels * features + features
    cost.macs += positions * x.channels * features
    cost.fvcore_flops += positions * x.channels * features
    cost.activations += positions * features
    cost.save(x)
    return cost.output(features, x.height, x.width)


def norm_cost(cost: Cost, x: Act, kind: str) -> Act:
    """BatchNorm keeps its input and two per-channel statistics; LayerNorm its input and two per-position ones.
    fvcore counts 2 operations an element for BatchNorm in eval mode, 5 for LayerNorm."""
    cost.params += 2 * x.channels
    if not x.saved:  # cost.save(x), inline
        x.saved = True
        cost.saved += x.elements
    if kind == "batchnorm":
        cost.fvcore_flops += 2 * x.elements
        cost.saved_fixed += 2 * x.channels
    else:
        cost.fvcore_flops += 5 * x.elements
        cost.saved += 2 * x.height * x.width
    return cost.output(x.channels, x.height, x.width)


def conv_norm_act_cost(cost: Cost, x: Act, cout, kernel, stride=1, groups=1, norm="batchnorm", act="silu",
                       padding=None, bias=False) -> Act:
    """ConvNormAct: conv, norm, then the activation (none for a projection)."""
    x = norm_cost(cost, conv_cost(cost, x, cout, kernel, stride, groups, bias, padding), norm)
    return x if act is None else activation_cost(cost, x, act)


def pool_cost(cost: Cost, x: Act) -> Act:
    """Global average pooling: fvcore counts one operation an input element; autograd keeps nothing."""
    cost.fvcore_flops += x.elements
    return cost.output(x.channels, 1, 1)


def max_pool_cost(cost: Cost, x: Act, kernel: int = 3, stride: int = 2, padding: int = 1) -> Act:
    """Max-pooling keeps its input and the int64 index of every maximum; fvcore does not count it."""
    cost.save(x)
    out = cost.output(x.channels, (x.height + 2 * padding - kernel) // stride + 1,
                      (x.width + 2 * padding - kernel) // stride + 1)
    cost.saved_int64 += out.elements
    return out


def stochastic_depth_cost(cost: Cost, x: Act, p: float) -> Act:
    """StochasticDepth: multiplying by the per-sample mask keeps only the mask, one element an image."""
    if p == 0.0:
        return x
    cost.saved += 1
    return cost.output(x.channels, x.height, x.width)


def dropout_cost(cost: Cost, x: Act, p: float) -> Act:
    """In-place dropout keeps its random mask, as large as its input, in the training dtype."""
    if p:
        cost.saved += x.elements
    return x


def squeeze_excitation_cost(cost: Cost, x: Act, squeeze: int, act: str) -> Act:
    """SqueezeExcitation: pool, 1x1 conv down, activation, 1x1 conv up, sigmoid gate times the input."""
    s = conv_cost(cost, pool_cost(cost, x), squeeze, 1, bias=True)
    scale = conv_cost(cost, activation_cost(cost, s, act), x.channels, 1, bias=True)
    scale = cost.output(scale.channels, 1, 1)
    cost.save(scale)
    cost.save(x)
    return cost.output(x.channels, x.height, x.width)


def _residual(cost: Cost, branch: Act, drop_path: float) -> Act:
    """branch (after stochastic depth) + shortcut: the sum is a new tensor; the add keeps nothing."""
    stochastic_depth_cost(cost, branch, drop_path)
    return cost.output(branch.channels, branch.height, branch.width)


def mbconv_cost(cost: Cost, x: Act, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm) -> Act:
    """MBConv (and MobileNetV2's InvertedResidual, which is MBConv without squeeze-excitation)."""
    y = x
    if hidden != cin:
        y = conv_norm_act_cost(cost, y, hidden, 1, norm=norm, act=act)
    y = conv_norm_act_cost(cost, y, hidden, kernel, stride, groups=hidden, norm=norm, act=act)
    if se_ratio:
        y = squeeze_excitation_cost(cost, y, squeeze_channels(cin, se_ratio), act)
    y = conv_norm_act_cost(cost, y, cout, 1, norm=norm, act=None)
    return _residual(cost, y, drop_path) if stride == 1 and cin == cout else y


def fused_mbconv_cost(cost: Cost, x: Act, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act,
                      norm) -> Act:
    """FusedMBConv: one full kxk conv in place of expand + depthwise, then the 1x1 projection."""
    if hidden != cin:
        y = conv_norm_act_cost(cost, x, hidden, kernel, stride, norm=norm, act=act)
        y = conv_norm_act_cost(cost, y, cout, 1, norm=norm, act=None)
    else:
        y = conv_norm_act_cost(cost, x, cout, kernel, stride, norm=norm, act=act)
    return _residual(cost, y, drop_path) if stride == 1 and cin == cout else y


def _shortcut_cost(cost: Cost, x: Act, branch: Act, cout: int, stride: int, drop_path: float, act: str,
                   norm: str) -> Act:
    """The ResNet tail: optional projection shortcut, residual add, then the activation on the sum."""
    if stride != 1 or x.channels != cout:
        conv_norm_act_cost(cost, x, cout, 1, stride, norm=norm, act=None, padding=0)
    return activation_cost(cost, _residual(cost, branch, drop_path), act)


def basic_block_cost(cost: Cost, x: Act, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm) -> Act:
    """BasicBlock: two kxk convs and the shortcut."""
    y = conv_norm_act_cost(cost, x, cout, kernel, stride, norm=norm, act=act)
    y = conv_norm_act_cost(cost, y, cout, kernel, norm=norm, act=None)
    return _shortcut_cost(cost, x, y, cout, stride, drop_path, act, norm)


def bottleneck_cost(cost: Cost, x: Act, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act, norm) -> Act:
    """Bottleneck: 1x1 reduce, strided kxk, 1x1 expand, and the shortcut."""
    y = conv_norm_act_cost(cost, x, hidden, 1, norm=norm, act=act)
    y = conv_norm_act_cost(cost, y, hidden, kernel, stride, norm=norm, act=act)
    y = conv_norm_act_cost(cost, y, cout, 1, norm=norm, act=None)
    return _shortcut_cost(cost, x, y, cout, stride, drop_path, act, norm)


def convnext_block_cost(cost: Cost, x: Act, cin, cout, stride, kernel, hidden, se_ratio, drop_path, act,
                        norm) -> Act:
    """CNBlock: depthwise conv, LayerNorm, inverted MLP, layer scale, residual."""
    y = conv_cost(cost, x, cout, kernel, groups=cout, bias=True)
    y = norm_cost(cost, y, "layernorm")
    y = linear_cost(cost, activation_cost(cost, linear_cost(cost, y, hidden), act), cout)
    cost.params += cout
    cost.save(y)
    scaled = cost.output(cout, y.height, y.width)
    return _residual(cost, scaled, drop_path)


def convnext_downsample_cost(cost: Cost, x: Act, cout: int, stride: int) -> Act:
    """ConvNeXt's downsampling between stages: LayerNorm, then a stride x stride conv."""
    return conv_cost(cost, norm_cost(cost, x, "layernorm"), cout, stride, stride, bias=True, padding=0)


BLOCK_COSTS = {
    "mbconv": mbconv_cost,
    "fused_mbconv": fused_mbconv_cost,
    "inverted_residual": mbconv_cost,
    "basic": basic_block_cost,
    "bottleneck": bottleneck_cost,
    "convnext": convnext_block_cost,
}
