"""The embedded synthetic dataset: procedural image classification where depth, width and resolution all matter.

Every image is a cluttered scene with two or three textured objects: exactly one disc (the "marker") and one
or two squares of the same area. The class is the product of three attributes (4 x 2 x 2 = 16 classes, all
equally frequent):

- **texture** of the objects: horizontal stripes, vertical stripes, dots (a fine two-way grating) or solid.
  The gratings are sinusoids between two colours with a period of 2.4 to 6 px at 64 px (random per object),
  and "solid" is their mean colour, so the four textures differ *only* in fine detail. Downsampling
  (antialiased) to 32 px wipes out nearly all of it, 48 px keeps the coarser periods, 64 px all of them:
  this is the attribute that needs **resolution**. The background carries a weaker random texture of its own,
  so the texture must be read *inside the objects*, not as a global statistic.
- **relation**: whether the disc is above all the squares ("disc-top") or below all of them ("disc-bottom").
  The objects sit on a jittered 3 x 3 grid, and in half of the images the disc is in the middle row, where
  only a comparison with the squares, a third of the image away, decides. Telling disc from square and then
  relating parts far apart needs large receptive fields and several stages of composition: **depth**.
  It is vertical on purpose: random horizontal flips, the usual augmentation, keep every label.
- **count**: two or three objects, of random sizes, among small untextured clutter blobs that do not count.
  Counting, combined with the other two attributes into 16 conjunctions under random colours, sizes and
  positions, takes many feature detectors at once: **width**.

Nuisances: random background colour with smooth low-frequency clutter and pixel noise, a random object colour
per object (always contrasting with the background), random texture contrast, period and phase, object sizes,
grid jitter and up to three clutter blobs. A one-layer classifier on pixels stays near chance; a small
EfficientNet learns the count and the relation at 32 px but needs 48-64 px for the texture, so accuracy keeps
rising with each dimension instead of saturating.

Why 64 px native: the finest texture (2.4 px period) is just above the Nyquist limit there, so 64 px holds all
the information; a larger native size would cost 2.25x (96 px) the memory and generation time on a CPU for
nothing a proxy at <= 64 px can see. `generate(..., size=S)` renders the same scenes at any size: above 64 px
directly (geometry and periods are in image-relative units), below 64 px by rendering at 64 px and
downsampling with antialiasing, exactly as a training pipeline would.

Generation is fully vectorised in chunks of `CHUNK` images; chunk `c` of the stream for `seed` is drawn from
its own generator seeded from (seed, c), and each chunk holds every class equally often. So the same seed and
index always give the same image whatever `start` and `count` are, train and validation sets are disjoint
index ranges, and results do not depend on the number of threads.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

NATIVE_RESOLUTION = 64
TEXTURES = ("h-stripes", "v-stripes", "dots", "solid")
RELATIONS = ("disc-top", "disc-bottom")
COUNTS = (2, 3)
NUM_CLASSES = len(TEXTURES) * len(RELATIONS) * len(COUNTS)
# label = (texture * len(COUNTS) + count index) * len(RELATIONS) + relation
CLASS_NAMES: tuple[str, ...] = tuple(
    f"{texture}/{relation}/{count}" for texture in TEXTURES for count in COUNTS for relation in RELATIONS
)
CHUNK = 160  # images per independently seeded chunk; a multiple of NUM_CLASSES so every chunk is balanced

# Geometry, in units of the image side (so it is the same scene at any size).
GRID = (0.2, 0.5, 0.8)          # row and column centres of the 3 x 3 layout
JITTER = 0.015                  # uniform jitter of each object centre, each axis
RADIUS = (0.10, 0.14)           # disc radius; squares have the same area
PERIOD = (2.4 / 64, 6.0 / 64)   # texture period, log-uniform
CONTRAST = (0.15, 0.30)         # texture half-amplitude, per object
BACKGROUND_TEXTURE = 0.0        # background texture amplitude relative to an object's
CLUTTER = 3                     # at most this many clutter blobs
CLUTTER_RADIUS = (0.025, 0.045)
NOISE = 0.03                    # pixel noise standard deviation (images in [0, 1])
_SQUARE_HALF = math.sqrt(math.pi) / 2  # half-side of a square with the area of a unit disc


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


def _grating(coords: torch.Tensor, period: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """cos(2 pi coords / period + phase), broadcasting (B, 1) parameters over (S,) coordinates -> (B, S)."""
    return torch.cos(coords[None, :] * (2 * math.pi / period[:, None]) + phase[:, None])


def _texture(kind: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """(B, S, S) texture in [-1, 1]: kind 0 horizontal stripes (varies along y), 1 vertical, 2 dots, 3 solid."""
    h = (kind == 0).float()[:, None, None]
    v = (kind == 1).float()[:, None, None]
    d = (kind == 2).float()[:, None, None]
    gx, gy = gx[:, None, :], gy[:, :, None]
    # Dots: the product of two gratings has half the amplitude per component; 1.6 brings its energy near a stripe's.
    return h * gy + v * gx + d * 1.6 * (gx * gy)


def _colours_away_from(g: torch.Tensor, reference: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Random colours at a distance in [low, high] from `reference` (B, 3), clamped into [0.05, 0.95]."""
    direction = torch.randn(reference.shape, generator=g)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-6)
    distance = _uniform(g, (reference.shape[0], 1), low, high)
    return (reference + direction * distance).clamp(0.05, 0.95)


def _render_chunk(chunk: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One balanced chunk of CHUNK images at `size` (>= native) as float (B, 3, S, S) in [0, 1], and labels."""
    g = _chunk_generator(seed, chunk)
    b = CHUNK
    # ---- every random draw first, in a fixed order, none of it depending on `size` ----
    labels = torch.arange(b) % NUM_CLASSES
    labels = labels[torch.randperm(b, generator=g)]
    relation = labels % len(RELATIONS)                        # 0: disc above all squares, 1: below
    count_index = (labels // len(RELATIONS)) % len(COUNTS)
    texture = labels // (len(RELATIONS) * len(COUNTS))
    count = torch.tensor(COUNTS)[count_index]

    # Layout: the disc's row, then the squares in distinct cells strictly below (disc-top) or above it.
    middle = torch.rand(b, generator=g) < 0.5
    disc_row = torch.where(middle, 1, torch.where(relation == 0, 0, 2))
    disc_col = torch.randint(0, 3, (b,), generator=g)
    cell_row = torch.arange(9) // 3
    allowed = torch.where((relation == 0)[:, None], cell_row[None, :] > disc_row[:, None],
                          cell_row[None, :] < disc_row[:, None])
    scores = torch.rand(b, 9, generator=g).masked_fill(~allowed, -1.0)
    square_cells = scores.topk(2, dim=1).indices              # (B, 2); the second is used only when count == 3
    rows = torch.cat([disc_row[:, None], square_cells // 3], dim=1)   # (B, 3): disc, square, square
    cols = torch.cat([disc_col[:, None], square_cells % 3], dim=1)
    grid = torch.tensor(GRID)
    cy = grid[rows] + _uniform(g, (b, 3), -JITTER, JITTER)
    cx = grid[cols] + _uniform(g, (b, 3), -JITTER, JITTER)
    radius = _uniform(g, (b, 3), *RADIUS)
    present = torch.stack([torch.ones(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool), count == 3], dim=1)

    background = _uniform(g, (b, 3), 0.15, 0.85)
    smooth = torch.randn(b, 3, 5, 5, generator=g) * 0.07
    object_mean = torch.stack([_colours_away_from(g, background, 0.3, 0.55) for _ in range(3)], dim=1)
    object_delta = torch.randn(b, 3, 3, generator=g)
    object_delta = object_delta / object_delta.norm(dim=2, keepdim=True).clamp_min(1e-6)
    object_delta = object_delta * _uniform(g, (b, 3, 1), *CONTRAST) * math.sqrt(3)
    log_period = _uniform(g, (b, 4, 2), math.log(PERIOD[0]), math.log(PERIOD[1]))
    period = log_period.exp()
    period[..., 1] = period[..., 0]  # one period for both axes of a dot grid
    phase = _uniform(g, (b, 4, 2), 0.0, 2 * math.pi)
    background_kind = torch.randint(0, 4, (b,), generator=g)
    background_delta = torch.randn(b, 3, generator=g)
    background_delta = background_delta / background_delta.norm(dim=1, keepdim=True).clamp_min(1e-6)
    background_delta = background_delta * _uniform(g, (b, 1), *CONTRAST) * math.sqrt(3) * BACKGROUND_TEXTURE
    clutter_on = torch.rand(b, CLUTTER, generator=g) < 0.6
    clutter_xy = _uniform(g, (b, CLUTTER, 2), 0.05, 0.95)
    clutter_radius = _uniform(g, (b, CLUTTER), *CLUTTER_RADIUS)
    clutter_colour = torch.stack([_colours_away_from(g, background, 0.25, 0.55) for _ in range(CLUTTER)], dim=1)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))

    # ---- rendering ----
    s = size
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    image = background[:, :, None, None] + F.interpolate(smooth, size=(s, s), mode="bicubic", align_corners=False)
    texture_bg = _texture(background_kind, _grating(coords, period[:, 3, 0], phase[:, 3, 0]),
                          _grating(coords, period[:, 3, 1], phase[:, 3, 1]))
    image = image + background_delta[:, :, None, None] * texture_bg[:, None]

    for k in range(CLUTTER):  # under the objects
        dx = (coords[None, :] - clutter_xy[:, k, 0:1]).square()[:, None, :]
        dy = (coords[None, :] - clutter_xy[:, k, 1:2]).square()[:, :, None]
        r = clutter_radius[:, k, None, None]
        mask = ((r - (dx + dy).sqrt()) * s + 0.5).clamp_(0, 1) * clutter_on[:, k, None, None]
        image += mask[:, None] * (clutter_colour[:, k, :, None, None] - image)

    for k in range(3):
        dx = coords[None, :] - cx[:, k:k + 1]
        dy = coords[None, :] - cy[:, k:k + 1]
        r = radius[:, k:k + 1]
        if k == 0:
            mask = ((r[:, :, None] - (dx.square()[:, None, :] + dy.square()[:, :, None]).sqrt()) * s + 0.5).clamp_(0, 1)
        else:
            half = r * _SQUARE_HALF
            mx = ((half - dx.abs()) * s + 0.5).clamp_(0, 1)
            my = ((half - dy.abs()) * s + 0.5).clamp_(0, 1)
            mask = my[:, :, None] * mx[:, None, :] * present[:, k, None, None]
        t = _texture(texture, _grating(coords, period[:, k, 0], phase[:, k, 0]),
                     _grating(coords, period[:, k, 1], phase[:, k, 1]))
        colour = object_mean[:, k, :, None, None] + object_delta[:, k, :, None, None] * t[:, None]
        image += mask[:, None] * (colour - image)

    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(noise_seed))
    image += noise * NOISE
    return image.clamp_(0, 1), labels


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
