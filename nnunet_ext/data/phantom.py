"""The synthetic pancreas-CT phantom: one case (CT image and label map) drawn from a random generator.

Every case is one CT channel in Hounsfield units (int16) with a label map (uint8: 0 background,
1 pancreas, 2 tumour). Anatomy is drawn in coordinates normalised to the volume extent (-1..1 on every
axis), so the same abdomen comes out at any image size. Array axes are numpy (z, y, x); low z indices are
the upper (cranial) slices, y grows towards the patient's back and image-left (x < 0) is the patient's right.
From the outside in:

* air (-1000 HU) outside an elliptical body whose axes change slowly along z;
* a subcutaneous fat layer (~-100 HU) and soft tissue / muscle filling the abdomen (30-45 HU);
* neighbouring organs of similar density: a liver-like ellipsoid (~60 HU, upper slices, patient's right),
  a spleen-like one (~50 HU, upper slices, patient's left) and two kidney-like ones (~35-45 HU, lower
  slices, either side of the spine, each in a rim of perirenal fat);
* bone: a vertebral body (cancellous ~400 HU with a denser cortex, thin intervertebral discs every
  ~30 mm) with the spinal canal and posterior arch, and a few rib cross-sections in the upper slices;
* tubular vessels running along z with a little drift (~150-200 HU): aorta, inferior vena cava,
  superior mesenteric artery and vein;
* the pancreas (~90-115 HU, label 1): a tube of varying thickness (thick head, narrow neck, body,
  thin tail) around a quadratic Bezier curve that bends anteriorly in the axial plane and rises
  from the head (patient's right, next to the vena cava) to the tail (next to the spleen), so it
  spans several slices; ``pancreas_scale`` multiplies its thickness (and so the tumour's size);
* in a case drawn with a tumour, a hypodense tumour (~20-40 HU, label 2): an ellipsoidal blob centred on
  the pancreas head or body, cut to the inner part of the pancreas, so label 2 always lies inside the
  pancreas with a rim of label 1 around it.

The piecewise constant image is smoothed mildly (partial volume), then correlated Gaussian noise
(sd 10-18 HU) is added. Case sizes vary (default z 20-28, y and x 56-72 voxels; ``size_scale``
multiplies them, 4 gives MSD-like ~100 x 256 x 256), as do organ positions, sizes and intensities.
Only the generator passed in is drawn from, in a fixed order: the same generator state and arguments
give the same arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["LABELS", "draw_shape", "draw_case"]

LABELS = {"background": 0, "pancreas": 1, "tumour": 2}

#: default case size range (inclusive), voxels, before ``size_scale``
_Z_RANGE = (20, 28)
_YX_RANGE = (56, 72)
#: smallest size a case is ever drawn at, whatever ``size_scale`` says
_MIN_SHAPE = (4, 16, 16)
#: z (normalised) half-thickness of the pancreas tube relative to its in-plane radius
_PANCREAS_KZ = 2.0


# --------------------------------------------------------------------------------------------------------------
# drawing helpers
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """Normalised coordinates (-1..1) of a volume, as broadcastable arrays of shape (nz,1,1), (1,ny,1), (1,1,nx)."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @classmethod
    def of(cls, shape: Sequence[int]) -> "_Grid":
        nz, ny, nx = shape
        return cls(np.linspace(-1, 1, nz, dtype=np.float32).reshape(nz, 1, 1),
                   np.linspace(-1, 1, ny, dtype=np.float32).reshape(1, ny, 1),
                   np.linspace(-1, 1, nx, dtype=np.float32).reshape(1, 1, nx))

    @property
    def shape(self):
        return self.z.shape[0], self.y.shape[1], self.x.shape[2]


def _ellipse(g: _Grid, cy, cx, ay, ax) -> np.ndarray:
    """Normalised squared radius of an elliptic cylinder along z (< 1 inside); centre/axes may vary with z."""
    return ((g.y - cy) / ay) ** 2 + ((g.x - cx) / ax) ** 2


def _ellipsoid(g: _Grid, cz, cy, cx, az, ay, ax) -> np.ndarray:
    """Normalised squared radius of an axis-aligned ellipsoid (< 1 inside)."""
    return ((g.z - cz) / az) ** 2 + _ellipse(g, cy, cx, ay, ax)


def _to_index(v: float, n: int) -> float:
    """Normalised coordinate -> (fractional) voxel index along an axis of length n."""
    return (v + 1.0) / 2.0 * (n - 1)


def _bbox(shape, lo, hi):
    """Voxel slices covering the normalised box [lo, hi] (z, y, x), with one voxel margin, clipped to the volume."""
    sl = []
    for n, a, b in zip(shape, lo, hi):
        i0 = max(int(math.floor(_to_index(a, n))) - 1, 0)
        i1 = min(int(math.ceil(_to_index(b, n))) + 2, n)
        sl.append(slice(i0, max(i1, i0 + 1)))
    return tuple(sl)


def _sub(g: _Grid, sl) -> _Grid:
    return _Grid(g.z[sl[0]], g.y[:, sl[1]], g.x[:, :, sl[2]])


# --------------------------------------------------------------------------------------------------------------
# one case
# --------------------------------------------------------------------------------------------------------------
def draw_shape(rng: np.random.Generator, size_scale: float = 1.0) -> tuple[int, int, int]:
    """Draw a case size (z, y, x) in voxels: the default ranges times ``size_scale``, at least ``_MIN_SHAPE``."""
    nz = int(rng.integers(_Z_RANGE[0], _Z_RANGE[1] + 1))
    ny, nx = (int(v) for v in rng.integers(_YX_RANGE[0], _YX_RANGE[1] + 1, size=2))
    return tuple(max(int(round(n * size_scale)), m) for n, m in zip((nz, ny, nx), _MIN_SHAPE))


def _pancreas_curve(rng: np.random.Generator, pancreas_scale: float = 1.0):
    """Centre line (Bezier in the axial plane, rising along z) and radius profile of the pancreas."""
    def j(s):
        return rng.uniform(-s, s)

    head = np.array([0.12 + j(0.04), -0.28 + j(0.04)])
    bend = np.array([-0.28 + j(0.06), 0.05 + j(0.06)])   # pulls the neck/body anteriorly
    tail = np.array([0.16 + j(0.04), 0.52 + j(0.04)])
    z_head = 0.15 + j(0.1)
    z_tail = z_head - rng.uniform(0.25, 0.45)              # the tail rises towards the splenic hilum
    thick = rng.uniform(0.9, 1.15) * pancreas_scale
    radius_knots = (np.array([0.0, 0.15, 0.32, 0.6, 1.0]),
                    thick * np.array([0.12, 0.11, 0.065, 0.075, 0.045]))   # head, head, neck, body, tail

    def centre(t):
        t = np.asarray(t, dtype=np.float64)[..., None]
        yx = (1 - t) ** 2 * head + 2 * (1 - t) * t * bend + t ** 2 * tail
        z = z_head + (z_tail - z_head) * t
        return np.concatenate([z, yx], axis=-1)  # (..., 3) as (z, y, x)

    def radius(t):
        return np.interp(t, *radius_knots)

    return centre, radius


def _tube_field(g: _Grid, points: np.ndarray, radii: np.ndarray, kz: float) -> np.ndarray:
    """min over centre-line samples of distance / local radius (< 1 inside the tube); z distances scaled by 1/kz."""
    field = np.full(g.shape, np.inf, dtype=np.float32)
    for (pz, py, px), r in zip(points, radii):
        d2 = ((g.z - pz) / kz) ** 2 + (g.y - py) ** 2 + (g.x - px) ** 2
        np.minimum(field, d2 / np.float32(r * r), out=field)
    return np.sqrt(field)


def draw_case(rng: np.random.Generator, shape, spacing, with_tumour: bool, pancreas_scale: float = 1.0,
              tumour_scale: float = 1.0):
    """Draw one case of ``shape`` (z, y, x) at ``spacing`` (z, y, x, mm), with or without a tumour;
    ``pancreas_scale`` multiplies the thickness of the pancreas (the tumour is drawn relative to it),
    ``tumour_scale`` the radii of the tumour's blob (still cut to the inner part of the pancreas).
    Returns (image int16 (z,y,x), label uint8 (z,y,x))."""
    g = _Grid.of(shape)
    nz, ny, nx = shape
    u = rng.uniform
    img = np.full(shape, -1000.0, dtype=np.float32)
    lab = np.zeros(shape, dtype=np.uint8)

    # body outline (elliptic, axes drift slowly along z) and subcutaneous fat
    by, bx = u(0.74, 0.82), u(0.86, 0.94)
    taper = 1.0 + u(-0.04, 0.04) * g.z
    cy_body = u(-0.04, 0.04)
    body = _ellipse(g, cy_body, 0.0, by * taper, bx * taper) < 1
    fat_t = u(0.06, 0.1)
    inner = _ellipse(g, cy_body, 0.0, (by - fat_t) * taper, (bx - fat_t) * taper) < 1
    img[body] = u(-110, -90)
    img[inner] = u(30, 45)

    def paint(mask, hu, clip=True):
        if clip:
            mask = mask & inner
        img[mask] = hu

    # neighbouring organs of similar density (drawn so that later ones cover earlier ones)
    for side in (-1, 1):  # kidneys in a rim of perirenal fat, lower slices
        kidney = _ellipsoid(g, u(0.35, 0.6), 0.36 + u(-0.04, 0.04), side * (0.4 + u(-0.04, 0.04)),
                            u(0.6, 0.8), u(0.12, 0.16), u(0.08, 0.11))
        paint(kidney < 1.6, u(-90, -60))
        paint(kidney < 1, u(35, 45))
    paint(_ellipsoid(g, u(-0.8, -0.5), u(-0.1, 0.0), u(-0.55, -0.45),
                     u(0.8, 1.0), u(0.4, 0.48), u(0.3, 0.36)) < 1, u(55, 70))          # liver
    paint(_ellipsoid(g, u(-0.7, -0.4), u(0.25, 0.33), u(0.6, 0.66),
                     u(0.5, 0.7), u(0.17, 0.22), u(0.1, 0.13)) < 1, u(48, 58))         # spleen

    # spine: vertebral body (cortex + cancellous bone, discs every ~30 mm), canal and posterior arch
    vy, vr = 0.42 + u(-0.02, 0.02), u(0.11, 0.13)
    vert = _ellipse(g, vy, 0.0, vr, vr * 1.1)
    z_mm = (np.arange(nz, dtype=np.float32) * spacing[0]).reshape(nz, 1, 1)
    disc = ((z_mm + u(0, 30)) % 30.0) < 5.0
    canal_y = vy + vr + 0.06
    arch = _ellipse(g, canal_y, 0.0, 0.095, 0.1)
    canal = _ellipse(g, canal_y, 0.0, 0.05, 0.05)
    paint(arch < 1, u(550, 750))
    paint(canal < 1, u(15, 30))
    paint(vert < 1, u(650, 900))
    paint((vert < 0.7) & ~disc, u(380, 450))
    paint((vert < 1) & disc, u(80, 100))
    # ribs: small bony cross-sections just inside the fat, upper slices only
    for ang in np.deg2rad([-25.0, 30.0, 65.0, 115.0, 150.0, 205.0]) + u(-0.1, 0.1):
        ry, rx = cy_body + 0.82 * by * np.sin(ang), 0.82 * bx * np.cos(ang)
        paint((_ellipse(g, ry, rx, 0.04, 0.04) < 1) & (g.z < u(0.0, 0.3)), u(450, 650), clip=False)

    # vessels: tubes along z with a little drift
    def drift():
        return u(-0.03, 0.03) * g.z

    for cy, cx, r in ((0.2, 0.1, 0.075),     # aorta
                      (0.2, -0.18, 0.07),    # inferior vena cava
                      (0.05, 0.04, 0.035),   # superior mesenteric artery
                      (0.04, -0.07, 0.045)):  # superior mesenteric vein
        paint(_ellipse(g, cy + u(-0.02, 0.02) + drift(), cx + u(-0.02, 0.02) + drift(),
                       r * u(0.9, 1.1), r * u(0.9, 1.1)) < 1, u(150, 200))

    # pancreas: sampled centre line, densely enough that the tube is smooth at any resolution
    centre, radius = _pancreas_curve(rng, pancreas_scale)
    n_pts = int(np.clip(max(ny, nx), 48, 400))
    t = np.linspace(0.0, 1.0, n_pts)
    pts, rad = centre(t), radius(t)
    ext = np.array([_PANCREAS_KZ, 1.0, 1.0]) * rad.max()
    sl = _bbox(shape, pts.min(0) - ext, pts.max(0) + ext)
    field = _tube_field(_sub(g, sl), pts, rad, _PANCREAS_KZ)
    pancreas = (field < 1) & inner[sl]
    if not pancreas.any():  # tiny volumes: keep at least the voxel closest to the centre line
        pancreas.flat[np.argmin(field)] = True
    img[sl][pancreas] = u(90, 115)
    lab[sl][pancreas] = LABELS["pancreas"]

    # tumour: hypodense blob centred near the head/body centre line, cut to the inner part of the pancreas
    if with_tumour:
        tc = u(0.05, 0.7)
        c = centre(tc) + np.array([0.0, *rng.uniform(-0.3, 0.3, size=2) * radius(tc)])
        rt = radius(tc) * u(0.7, 1.0) * tumour_scale
        blob = _ellipsoid(_sub(g, sl), c[0], c[1], c[2], rt * _PANCREAS_KZ, rt, rt * u(0.8, 1.2)) < 1
        tumour = blob & pancreas & (field < 0.8)  # keep a rim of pancreas around the tumour
        img[sl][tumour] = u(20, 40)
        lab[sl][tumour] = LABELS["tumour"]

    # partial-volume smoothing, then correlated noise
    img = gaussian_filter(img, sigma=(0.35, 0.6, 0.6), mode="nearest")
    noise = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=0.5, mode="wrap")
    noise *= np.float32(u(10, 18) / max(float(noise.std()), 1e-6))
    img += noise
    img = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    return img, lab
