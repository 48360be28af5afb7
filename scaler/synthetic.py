"""The embedded synthetic dataset: procedural image classification where depth, width and resolution all matter.

Every image is a scene of two to four dark objects on a light, cluttered background: exactly one disc (the
"marker") and one to three squares, each of its own size (a square has the area of a disc of its radius, 0.05
to 0.14 of the image side), on a jittered 3 x 3 grid. The class is the product of three attributes,
2 x 2 x 3 = 12 classes, each exactly 1/12 of every chunk of the stream:

- **texture** (`grating` or `plain`): the squares are filled either with a fine grating (horizontal stripes,
  vertical stripes or dots, at random) or with its mean colour; the disc is always plain, a clean shape to find.
  The gratings are sinusoids with a period of 2.4 to 8 px at 64 px (log-uniform, random per square), so the two
  values differ *only* in fine detail. Antialiased downsampling to 32 px erases the finer half of them and
  attenuates the rest; 48 px keeps most; 64 px all. This is the attribute that needs **resolution** (and, on
  small squares, capacity to read a few cycles). Their contrast decides when a training finds the attribute:
  at 0.15 to 0.30 a network learned it in some seeds and not at all in others, and a proxy's score was bimodal;
  at 0.35 to 0.60 none of those tried missed it, but a 4x longer training then solved the set (0.99) and could
  no longer rank networks (benchmarks/RESULTS.md, "A low-noise synthetic set" and "Rank fidelity"). So the
  images come in two halves: the **easy** ones (the even images of the stream, `easy`) have gratings of 0.35 to
  0.60, the others faint ones, log-uniform from 0.06 to 0.35, which a longer training keeps learning to read.
  The training's first epoch draws from the easy half alone (scaler.training): on the mixed set a network found
  the attribute early in some seeds and late in others, as on a faint set; after an easy start every seed finds
  it at once.
- **relation** (`disc-top` or `disc-bottom`): whether the disc is above all the squares or below all of them.
  In half of the images the disc is in the middle row, where only a comparison with squares a third of the
  image away decides. Telling a disc from a square of the same area (the smallest, 0.05 of the side, is a disc
  2.4 px in radius at 48 px), then relating parts far apart, takes large receptive fields and several stages of
  composition: the **depth** factor, with resolution for the small ones. It is vertical on purpose: random
  horizontal flips, the usual augmentation, keep every label.
- **count** (2, 3 or 4 objects), of random sizes, among up to three small clutter blobs that do not count.
  Counting, conjoined with the other two attributes into 12 classes under random colours, sizes and positions,
  takes many feature detectors at once: the **width** factor.

Nuisances: background colour and smooth low-frequency shading, pixel noise, a random colour, texture contrast,
period, phase and grating kind per square, object sizes, grid jitter, clutter blobs. Objects are always darker
than the background in every channel: with random contrast polarity, small networks learned nothing in a short
training (count and relation stayed at chance), so the difficulty lives in the attributes, not in finding the
objects.

Measured (benchmarks/proxy_noise.py, the default recipe: EfficientNet-B0 at width 0.5, depth 0.5, 48 px, 4 epochs
of 5,000 images, scored on 2,000, 3 seeds; chance 0.083): the proxy baseline 0.87, the references at 2x its real
FLOPs 0.88 (depth), 0.90 (width), 0.91 (the fast rule) and 0.95 (resolution); the pooled seed noise of a score
0.009 top-1, against 0.013 with every grating strong and no easy start, and 0.10 to 0.12 before the redesign
(benchmarks/RESULTS.md, with the variants tried). A 4x longer training ends at 0.965 to 0.987, below saturation,
and ranks 13 networks at equal FLOPs as this proxy does with Kendall's tau 0.70 (benchmarks/proxy_fidelity.py).
Depth pays only because the recipe starts residual branches at zero: with torchvision's initialisation the deeper
network trained more slowly and tied or lost. Near 64 px a small network nearly solves the set, so proxies should
train below it.

Why 64 px native: the finest grating (2.4 px period) is just above the Nyquist limit there, so 64 px holds all
the information, and a larger native size would cost 2.25x (96 px) the memory and generation time on a CPU for
detail that proxies at <= 64 px cannot see. `generate(..., size=S)` renders the same scenes at any size: above
64 px directly (geometry and periods are in image-relative units), below 64 px by rendering at 64 px and
downsampling with antialiasing, exactly as a training pipeline does.

Generation is vectorised over chunks of `CHUNK` images; chunk `c` of the stream for `seed` comes from its own
generator seeded from (seed, c). So the same seed and index always give the same image whatever `start` and
`count` are, training and validation sets are disjoint index ranges, and nothing depends on the thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

NATIVE_RESOLUTION = 64
TEXTURES = ("grating", "plain")
RELATIONS = ("disc-top", "disc-bottom")
COUNTS = (2, 3, 4)
NUM_CLASSES = len(TEXTURES) * len(RELATIONS) * len(COUNTS)
# label = (texture * len(COUNTS) + count index) * len(RELATIONS) + relation
CLASS_NAMES: tuple[str, ...] = tuple(
    f"{texture}/{relation}/{count}" for texture in TEXTURES for count in COUNTS for relation in RELATIONS
)
CHUNK = 192  # images per independently seeded chunk; a multiple of NUM_CLASSES (every chunk is balanced), even

# Geometry, in units of the image side (so it is the same scene at any size).
GRID = (0.2, 0.5, 0.8)          # row and column centres of the 3 x 3 layout
JITTER = 0.015                  # uniform jitter of each object centre, each axis (objects never overlap)
RADIUS = (0.05, 0.14)           # object radius (a square has the area of a disc of it); above CLUTTER_RADIUS
PERIOD = (2.4 / 64, 8.0 / 64)   # grating period, log-uniform
CONTRAST = (0.35, 0.60)         # grating amplitude (per channel, on average), per object, of an easy image
FAINT_CONTRAST = (0.06, 0.35)   # the same in the other images, log-uniform: the headroom a longer training finds
CLUTTER = 3                     # at most this many clutter blobs, each present with probability 0.6
CLUTTER_RADIUS = (0.025, 0.045)
SHADING = 0.035                 # amplitude of the smooth background shading
NOISE = 0.03                    # pixel noise standard deviation (images in [0, 1])
_SQUARE_HALF = math.sqrt(math.pi) / 2  # half-side of a square with the area of a unit disc
_OBJECTS = 1 + max(COUNTS) - 1  # object slots: the disc, then the squares


def _chunk_generator(seed: int, chunk: int) -> torch.Generator:
    """A generator for one chunk, seeded from (seed, chunk) by a 64-bit mix (splitmix64)."""
    mask = (1 << 64) - 1
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(chunk) + 0x632BE59BD9B4E019) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    return torch.Generator().manual_seed(x & ((1 << 63) - 1))


def _uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (high - low) + low


def _unit(g: torch.Generator, shape) -> torch.Tensor:
    """Random unit vectors along the last dimension."""
    v = torch.randn(shape, generator=g)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def easy(start: int, count: int) -> torch.Tensor:
    """Which of images [start, start+count) are easy (bool): the even ones, whose gratings have the strong
    CONTRAST; the odd ones' are faint (FAINT_CONTRAST)."""
    return torch.arange(start, start + count) % 2 == 0


def _edge(inside: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased coverage from a signed distance inside the shape (image units): a one-pixel soft edge."""
    return inside.mul_(size).add_(0.5).clamp_(0, 1)


def _composite(under: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor, texture: torch.Tensor | None = None,
               delta: torch.Tensor | None = None) -> torch.Tensor:
    """Lay shapes of coverage `alpha` (B, K, S, S) over `under` (B, 3, S, S), in place. Shape k has colour
    colour[:, k] (B, K, 3), plus texture[:, k] * delta[:, k] when a texture (B, K, S, S) is given.

    The shapes of one call (nearly) never overlap, so they go down in one weighted sum, as batched matrix
    products over the K shapes, instead of K sequential blends; where they do touch, their colours average."""
    total = alpha.sum(dim=1, keepdim=True)
    paint = torch.einsum("bkhw,bkc->bchw", alpha, colour)
    if texture is not None:
        paint += torch.einsum("bkhw,bkc->bchw", texture.mul_(alpha), delta)
    return under.mul_(1 - total.clamp(max=1)).add_(paint.div_(total.clamp_(min=1)))


@dataclass(frozen=True)
class _Scene:
    """Every random draw of one chunk: what is where, in image units, independent of the rendered size."""

    labels: torch.Tensor
    plain: torch.Tensor
    present: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    radius: torch.Tensor
    background: torch.Tensor
    shading: torch.Tensor
    object_mean: torch.Tensor
    object_delta: torch.Tensor
    period: torch.Tensor
    phase: torch.Tensor
    kind: torch.Tensor
    clutter_on: torch.Tensor
    clutter_xy: torch.Tensor
    clutter_radius: torch.Tensor
    clutter_colour: torch.Tensor
    noise_seed: int


def _draw_chunk(chunk: int, seed: int) -> _Scene:
    """Every random draw of chunk `chunk` first, in a fixed order, none of it depending on the size."""
    g = _chunk_generator(seed, chunk)
    b, n = CHUNK, _OBJECTS
    labels = (torch.arange(b) % NUM_CLASSES)[torch.randperm(b, generator=g)]
    relation = labels % len(RELATIONS)                        # 0: disc above all squares, 1: below all
    count = torch.tensor(COUNTS)[(labels // len(RELATIONS)) % len(COUNTS)]
    plain = labels // (len(RELATIONS) * len(COUNTS)) == 1

    # Layout: the disc's row (the middle one half of the time), then the squares in distinct cells of the rows
    # strictly below the disc (disc-top) or above it (disc-bottom): there are always at least three such cells.
    middle = torch.rand(b, generator=g) < 0.5
    disc_row = torch.where(middle, 1, torch.where(relation == 0, 0, 2))
    disc_col = torch.randint(0, 3, (b,), generator=g)
    cell_row = torch.arange(9) // 3
    allowed = torch.where((relation == 0)[:, None], cell_row > disc_row[:, None], cell_row < disc_row[:, None])
    scores = torch.rand(b, 9, generator=g).masked_fill_(~allowed, -1.0)
    square_cells = scores.topk(n - 1, dim=1).indices         # square j is drawn when count > j + 1
    grid = torch.tensor(GRID)
    cy = grid[torch.cat([disc_row[:, None], square_cells // 3], dim=1)] + _uniform(g, (b, n), -JITTER, JITTER)
    cx = grid[torch.cat([disc_col[:, None], square_cells % 3], dim=1)] + _uniform(g, (b, n), -JITTER, JITTER)
    radius = _uniform(g, (b, n), *RADIUS)
    present = torch.arange(n) < count[:, None]

    background = _uniform(g, (b, 3), 0.6, 0.9)
    shading = torch.randn(b, 3, 4, 4, generator=g) * SHADING
    shading[:, :, 0, 0] = 0  # the background colour is the mean
    object_mean = _uniform(g, (b, n, 3), 0.15, 0.45)          # darker than the background in every channel
    faint = _uniform(g, (b, n, 1), math.log(FAINT_CONTRAST[0]), math.log(FAINT_CONTRAST[1])).exp_()
    strong = _uniform(g, (b, n, 1), *CONTRAST)
    contrast = torch.where(easy(0, b)[:, None, None], strong, faint)  # CHUNK is even: the stream's parity
    object_delta = _unit(g, (b, n, 3)) * contrast * math.sqrt(3)
    period = _uniform(g, (b, n), math.log(PERIOD[0]), math.log(PERIOD[1])).exp_()
    phase = _uniform(g, (b, n, 2), 0.0, 2 * math.pi)
    kind = torch.randint(0, 3, (b,), generator=g)             # horizontal stripes, vertical stripes, dots
    clutter_on = torch.rand(b, CLUTTER, generator=g) < 0.6
    clutter_xy = _uniform(g, (b, CLUTTER, 2), 0.05, 0.95)
    clutter_radius = _uniform(g, (b, CLUTTER), *CLUTTER_RADIUS)
    clutter_colour = (background[:, None, :] + _unit(g, (b, CLUTTER, 3)) * _uniform(g, (b, CLUTTER, 1), 0.25, 0.55))
    clutter_colour = clutter_colour.clamp_(0.05, 0.95)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return _Scene(labels, plain, present, cx, cy, radius, background, shading, object_mean, object_delta, period,
                  phase, kind, clutter_on, clutter_xy, clutter_radius, clutter_colour, noise_seed)


def _render_chunk(chunk: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One balanced chunk of CHUNK images at `size` as float (B, 3, S, S) in [0, 1], and their labels."""
    d = _draw_chunk(chunk, seed)
    # ---- rendering, in image units: pixel centres at (i + 0.5) / size ----
    s = size
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    # Smooth shading: a random 4 x 4 cosine series, evaluated as two small matrix products.
    basis = torch.cos(math.pi * torch.arange(4, dtype=torch.float32)[:, None] * coords[None, :])  # (4, S)
    image = d.background[:, :, None, None] + torch.einsum("iy,bcij,jx->bcyx", basis, d.shading, basis)

    def disc(x, y, r):  # (B, K) centres and radii -> (B, K, S, S) coverage
        dx = (coords - x[..., None]).square_()
        dy = (coords - y[..., None]).square_()
        return _edge(r[..., None, None] - (dy[..., :, None] + dx[..., None, :]).sqrt_(), s)

    clutter = disc(d.clutter_xy[..., 0], d.clutter_xy[..., 1], d.clutter_radius) * d.clutter_on[..., None, None]
    image = _composite(image, clutter, d.clutter_colour)

    half = d.radius[:, 1:] * _SQUARE_HALF
    mx = _edge(half[..., None] - (coords - d.cx[:, 1:, None]).abs_(), s)
    my = _edge(half[..., None] - (coords - d.cy[:, 1:, None]).abs_(), s)
    squares = my[..., :, None] * mx[..., None, :] * d.present[:, 1:, None, None]
    alpha = torch.cat([disc(d.cx[:, :1], d.cy[:, :1], d.radius[:, :1]), squares], dim=1)   # (B, n, S, S)

    # Gratings: t = gy * (a + c * gx) + v * gx covers stripes along y (a = 1), along x (v = 1) and dots (c = 1.6,
    # which brings the product's energy near a stripe's); plain objects get t = 0, the gratings' mean colour.
    omega = (2 * math.pi / d.period)[..., None]
    gx = torch.cos(coords * omega + d.phase[..., 0:1])[..., None, :]    # (B, n, 1, S)
    gy = torch.cos(coords * omega + d.phase[..., 1:2])[..., :, None]    # (B, n, S, 1)
    textured = torch.arange(d.period.shape[1]) > 0                     # the disc (slot 0) is always plain
    on = ((~d.plain)[:, None] & textured).float()[..., None, None]      # (B, n, 1, 1)
    a, v, c = ((d.kind == i).float()[:, None, None, None] * on for i in range(3))
    texture = gy * (a + 1.6 * c * gx) + v * gx                          # (B, n, S, S)
    image = _composite(image, alpha, d.object_mean, texture, d.object_delta)

    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(d.noise_seed))
    return image.add_(noise, alpha=NOISE).clamp_(0, 1), d.labels


def generate(start: int, count: int, seed: int = 0, size: int = NATIVE_RESOLUTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [start, start+count) of the stream for `seed`: uint8 (count, 3, size, size) and int64 labels (count,).

    Image i is the same for a seed whatever `start` and `count` are. Below the native 64 px the scenes are rendered
    at 64 px and downsampled with antialiasing; at or above it they are rendered at `size` directly.
    """
    for name, value in (("start", start), ("count", count), ("seed", seed), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"synthetic {name}: expected an integer, got {value!r}")
    if start < 0 or count < 0 or size < 1:
        raise ValueError(f"synthetic: start and count must be >= 0 and size >= 1, got {start}, {count}, {size}")
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(count, dtype=torch.int64)
    render = max(size, NATIVE_RESOLUTION)
    done = 0
    while done < count:
        index = start + done
        chunk, offset = divmod(index, CHUNK)
        take = min(CHUNK - offset, count - done)
        chunk_images, chunk_labels = _render_chunk(chunk, seed, render)
        chunk_images = chunk_images[offset:offset + take].mul_(255)
        if size != render:
            chunk_images = F.interpolate(chunk_images, size=(size, size), mode="bilinear", antialias=True,
                                         align_corners=False).clamp_(0, 255)
        images[done:done + take] = chunk_images.round_().to(torch.uint8)
        labels[done:done + take] = chunk_labels[offset:offset + take]
        done += take
    return images, labels
