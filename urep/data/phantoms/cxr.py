"""Chest X-ray phantoms: a PA radiograph drawn from a handful of anatomical parameters.

A patient is a `CXRAnatomy` (lungs, heart, ribs, clavicles, soft-tissue texture and, for abnormal labels, a
lesion); a view is that anatomy rendered with a small pose and exposure change, in normalized coordinates, so
one patient looks the same at any size. Labels `normal`, `abnormal` (TB), `bacterial`, `viral`; the lesion mask
marks the finding (empty for `normal`). MONOCHROME2 convention: air dark. Details: docs/design.md, "Module notes".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

CXR_LABELS: tuple[str, ...] = ("normal", "abnormal", "bacterial", "viral")

_LESION_KIND = {"normal": None, "abnormal": "tb", "bacterial": "consolidation", "viral": "interstitial"}


@dataclass
class CXRAnatomy:
    """The patient-level parameters of a chest phantom (shared by all views of one patient).

    All coordinates are normalized to [0, 1] (x right, y down). Built by `sample_cxr_anatomy`.
    """

    label: str
    lungs: list[np.ndarray]
    heart: tuple[float, float, float, float, float]
    body_half_width: float
    shoulder_y: float
    ribs: list[np.ndarray]
    anterior_ribs: list[np.ndarray]
    rib_width: float
    clavicles: list[np.ndarray]
    vessels: list[tuple[np.ndarray, float]]
    texture: np.ndarray
    lung_texture: np.ndarray
    lung_darkness: float
    gastric_bubble: tuple[float, float, float] | None
    lesions: dict = field(default_factory=dict)


@dataclass
class CXRImage:
    """One rendered view.

    Attributes:
        image: ``(size, size)`` float32 in [0, 1].
        lung_mask: ``(size, size)`` uint8 in {0, 1}, both lung fields (the heart excluded).
        lesion_mask: ``(size, size)`` uint8 in {0, 1}, where the finding is drawn; all zero for ``normal``.
        body_mask: ``(size, size)`` uint8 in {0, 1}, the patient's outline.
    """

    image: np.ndarray
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    body_mask: np.ndarray


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """A (cells, cells) field of standard normal values, resized later into a smooth texture."""
    return rng.standard_normal((cells, cells)).astype(np.float32)


def _upsample(field_: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(field_, (size, size), interpolation=cv2.INTER_CUBIC)


def _lung_outline(rng: np.random.Generator, right_side: bool) -> np.ndarray:
    """Closed outline of one lung field as (n, 2) normalized (x, y) points.

    The patient's right lung is on the image's left. The outline is drawn for the image-left lung and
    mirrored for the other; the apex is rounded, the lateral border convex, the base a diaphragmatic dome
    ending in a sharp costophrenic angle.
    """
    x_med = rng.uniform(0.425, 0.455)
    x_lat = rng.uniform(0.11, 0.16)
    y_top = rng.uniform(0.13, 0.20)
    y_cp = rng.uniform(0.70, 0.79) + (0.0 if right_side else rng.uniform(0.0, 0.03))
    dome = rng.uniform(0.035, 0.075)
    y_mb = y_cp - rng.uniform(0.05, 0.10)
    x_apex = x_med - rng.uniform(0.09, 0.14)
    n = 28
    t = np.linspace(0.0, 1.0, n)
    lateral = np.stack([x_apex - (x_apex - x_lat) * (1 - (1 - t) ** 2.6), y_top + t * (y_cp - y_top)], 1)
    s = np.linspace(0.0, 1.0, n)[1:]
    base = np.stack(
        [x_lat + s * (x_med - x_lat), y_cp + s * (y_mb - y_cp) - dome * np.sin(np.pi * s**0.8)], 1
    )
    t = np.linspace(0.0, 1.0, n)[1:-1]
    hilum = rng.uniform(0.0, 0.02)
    medial = np.stack(
        [
            x_med + (x_apex - x_med) * t**4 - hilum * np.sin(np.pi * np.clip(t * 1.4, 0, 1)),
            y_mb + t * (y_top - y_mb),
        ],
        1,
    )
    outline = np.concatenate([lateral, base, medial], 0)
    centre = outline.mean(0)
    phase = rng.uniform(0, 2 * np.pi, 3)
    angle = np.arctan2(outline[:, 1] - centre[1], outline[:, 0] - centre[0])
    wobble = sum(rng.uniform(0.0, 0.006) * np.cos(k * angle + phase[k - 2]) for k in (2, 3, 4))
    direction = (outline - centre) / np.linalg.norm(outline - centre, axis=1, keepdims=True)
    outline = outline + direction * wobble[:, None]
    rotation = np.deg2rad(rng.uniform(-4, 4))
    scale = rng.uniform(0.94, 1.05)
    rot = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    outline = (outline - centre) @ rot.T * scale + centre
    if not right_side:
        outline[:, 0] = 1.0 - outline[:, 0]
    return outline


def _ribs(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Posterior ribs (spine to lateral wall, rising then falling) and fainter anterior ribs, both sides."""
    count = int(rng.integers(9, 11))
    first, last = rng.uniform(0.08, 0.12), rng.uniform(0.62, 0.7)
    spacing = (last - first) / (count - 1)
    x_end = rng.uniform(0.07, 0.11)
    posterior, anterior = [], []
    s = np.linspace(0.0, 1.0, 16)
    for i in range(count):
        y0 = first + i * spacing + rng.normal(0, 0.004)
        rise = rng.uniform(0.015, 0.03) * (1 - 0.3 * i / count)
        drop = rng.uniform(0.17, 0.24) * (0.75 + 0.5 * i / count)
        for sign in (-1, 1):
            x = 0.5 + sign * (0.035 + s * (0.5 - 0.035 - x_end))
            y = y0 - rise * np.sin(np.pi * s * 0.7) + drop * s**1.8
            posterior.append(np.stack([x, y], 1))
            if i < count - 3:
                xa = 0.5 + sign * (0.5 - x_end - s * rng.uniform(0.18, 0.26))
                ya = y0 + drop * 0.9 + s * rng.uniform(0.08, 0.12) - 0.03 * np.sin(np.pi * s)
                anterior.append(np.stack([xa, ya], 1))
    return posterior, anterior


def _clavicles(rng: np.random.Generator) -> list[np.ndarray]:
    s = np.linspace(0.0, 1.0, 14)
    y_med = rng.uniform(0.14, 0.19)
    y_lat = y_med - rng.uniform(0.02, 0.07)
    out = []
    for sign in (-1, 1):
        x = 0.5 + sign * (0.04 + s * rng.uniform(0.30, 0.36))
        y = y_med + s * (y_lat - y_med) + 0.015 * np.sin(2 * np.pi * s)
        out.append(np.stack([x, y], 1))
    return out


def _vessels(rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """Pulmonary vessels: tapering branches fanning out of each hilum as (segment (2, 2), width) pairs."""
    segments: list[tuple[np.ndarray, float]] = []

    def grow(start: np.ndarray, angle: float, length: float, width: float, depth: int) -> None:
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        segments.append((np.stack([start, end]), width))
        if depth == 0:
            return
        for _ in range(2):
            grow(end, angle + rng.normal(0, 0.45), length * rng.uniform(0.55, 0.8), width * 0.65, depth - 1)

    for sign in (-1, 1):
        hilum = np.array([0.5 + sign * rng.uniform(0.07, 0.1), rng.uniform(0.42, 0.5)])
        for base_angle in np.linspace(-2.2, 2.2, 5):
            angle = (np.pi if sign < 0 else 0.0) - sign * base_angle * 0.55 + rng.normal(0, 0.15)
            grow(hilum, angle, rng.uniform(0.07, 0.1), 0.010, 2)
    return segments


def _upper_zone_point(
    rng: np.random.Generator, outline: np.ndarray, box: tuple, margin: float
) -> tuple[float, float]:
    """A point in the upper 40 % of a lung field, at least `margin` inside its outline (rejection sampling)."""
    x0, x1, y0, y1 = box
    contour = outline.astype(np.float32).reshape(-1, 1, 2)
    for _ in range(50):
        point = (float(rng.uniform(x0, x1)), float(y0 + rng.uniform(0.06, 0.4) * (y1 - y0)))
        if cv2.pointPolygonTest(contour, point, True) >= margin:
            return point
    return float(outline[:, 0].mean()), float(y0 + 0.3 * (y1 - y0))


def _sample_lesions(rng: np.random.Generator, label: str, lungs: list[np.ndarray]) -> dict:
    kind = _LESION_KIND[label]
    if kind is None:
        return {}
    boxes = [(lung[:, 0].min(), lung[:, 0].max(), lung[:, 1].min(), lung[:, 1].max()) for lung in lungs]
    if kind == "tb":
        sides = [int(rng.integers(0, 2))] if rng.random() < 0.6 else [0, 1]
        nodules, cavities = [], []
        for side in sides:
            for _ in range(int(rng.integers(3, 8))):
                centre = _upper_zone_point(rng, lungs[side], boxes[side], margin=0.02)
                nodules.append((*centre, rng.uniform(0.016, 0.035), rng.uniform(0.1, 0.22)))
            if rng.random() < 0.55:
                centre = _upper_zone_point(rng, lungs[side], boxes[side], margin=0.03)
                cavities.append((*centre, rng.uniform(0.028, 0.048), rng.uniform(0.08, 0.18)))
        infiltrate = [(rng.choice(sides), rng.uniform(0.06, 0.14))]
        return {
            "kind": kind,
            "nodules": nodules,
            "cavities": cavities,
            "infiltrate": infiltrate,
            "blob": _smooth_noise(rng, 6),
        }
    if kind == "consolidation":
        side = int(rng.integers(0, 2))
        lobe = rng.choice(["lower", "middle", "upper"], p=[0.5, 0.25, 0.25])
        x0, x1, y0, y1 = boxes[side]
        fissure_y = {
            "lower": rng.uniform(0.45, 0.6),
            "middle": rng.uniform(0.42, 0.55),
            "upper": rng.uniform(0.38, 0.5),
        }[lobe]
        fissure = (y0 + fissure_y * (y1 - y0), rng.uniform(-0.35, 0.35))
        return {
            "kind": kind,
            "side": side,
            "lobe": str(lobe),
            "fissure": fissure,
            "density": rng.uniform(0.18, 0.35),
            "blob": _smooth_noise(rng, 5),
            "bronchi": [seg for seg in _vessels(rng)],
            "extent": rng.uniform(0.55, 0.95),
        }
    return {
        "kind": kind,
        "density": rng.uniform(0.1, 0.2),
        "spread": rng.uniform(0.16, 0.26),
        "reticular": rng.uniform(0.5, 1.0),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def sample_cxr_anatomy(rng: np.random.Generator, label: str) -> CXRAnatomy:
    """Draw one patient's anatomy and finding.

    Args:
        rng: the random generator (the only source of randomness).
        label: one of `CXR_LABELS`.

    Returns:
        The patient's `CXRAnatomy`.

    Raises:
        ValueError: `label` is not a known CXR label.
    """
    if label not in _LESION_KIND:
        raise ValueError(f"unknown CXR phantom label {label!r}; expected one of {CXR_LABELS}")
    lungs = [_lung_outline(rng, right_side=True), _lung_outline(rng, right_side=False)]
    heart = (
        rng.uniform(0.53, 0.57),
        rng.uniform(0.62, 0.67),
        rng.uniform(0.14, 0.19),
        rng.uniform(0.10, 0.13),
        rng.uniform(-30, -12),
    )
    ribs, anterior = _ribs(rng)
    bubble = (
        (rng.uniform(0.6, 0.7), rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.1))
        if rng.random() < 0.6
        else None
    )
    return CXRAnatomy(
        label=label,
        lungs=lungs,
        heart=heart,
        body_half_width=rng.uniform(0.43, 0.48),
        shoulder_y=rng.uniform(0.08, 0.14),
        ribs=ribs,
        anterior_ribs=anterior,
        rib_width=rng.uniform(0.016, 0.024),
        clavicles=_clavicles(rng),
        vessels=_vessels(rng),
        texture=_smooth_noise(rng, 7),
        lung_texture=_smooth_noise(rng, 12),
        lung_darkness=rng.uniform(0.30, 0.42),
        gastric_bubble=bubble,
        lesions=_sample_lesions(rng, label, lungs),
    )


def _fill(polygons: list[np.ndarray], size: int) -> np.ndarray:
    """Rasterize closed normalized polygons into a float32 {0, 1} image (sub-pixel vertices)."""
    canvas = np.zeros((size, size), np.uint8)
    pts = [np.round(p * size * 16).astype(np.int32) for p in polygons]
    cv2.fillPoly(canvas, pts, 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(np.float32)


def _strokes(curves: list[np.ndarray], widths: list[float], size: int) -> np.ndarray:
    """Draw open normalized polylines with normalized widths into a float32 [0, 1] image (anti-aliased)."""
    canvas = np.zeros((size, size), np.uint8)
    for curve, width in zip(curves, widths, strict=True):
        thickness = max(1, int(round(width * size)))
        pts = np.round(curve * size * 16).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _blur(image: np.ndarray, sigma_norm: float) -> np.ndarray:
    sigma = max(sigma_norm * image.shape[0], 0.3)
    return cv2.GaussianBlur(image, (0, 0), sigma)


def _ellipse(
    grid_x: np.ndarray, grid_y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float
) -> np.ndarray:
    a = np.deg2rad(angle)
    dx, dy = grid_x - cx, grid_y - cy
    u = (dx * np.cos(a) + dy * np.sin(a)) / ax
    v = (-dx * np.sin(a) + dy * np.cos(a)) / ay
    return u * u + v * v


def _discs(grid_x: np.ndarray, grid_y: np.ndarray, discs: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of soft discs (cx, cy, radius, amplitude) and the union of their supports."""
    density = np.zeros_like(grid_x)
    support = np.zeros_like(grid_x, dtype=bool)
    for cx, cy, radius, amplitude in discs:
        d2 = ((grid_x - cx) ** 2 + (grid_y - cy) ** 2) / radius**2
        density += amplitude / (1.0 + np.exp(np.minimum((d2 - 1.0) * 4.0, 50.0)))
        support |= d2 <= 1.0
    return density, support


def _lesion_density(
    anatomy: CXRAnatomy, lung_fields: list[np.ndarray], gx: np.ndarray, gy: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Extra density of the finding (added inside the lungs) and its {0, 1} support."""
    lesion = anatomy.lesions
    zero = np.zeros((size, size), np.float32)
    if not lesion:
        return zero, zero.astype(bool)
    lungs_any = (lung_fields[0] + lung_fields[1]) > 0.5
    kind = lesion["kind"]
    if kind == "tb":
        density, support = _discs(gx, gy, lesion["nodules"])
        for cx, cy, radius, amplitude in lesion["cavities"]:
            d = np.sqrt((gx - cx) ** 2 + (gy - cy) ** 2) / radius
            rim = np.exp(-((d - 0.85) ** 2) / 0.04)
            density += amplitude * rim - 0.35 * amplitude * (d < 0.7)
            support |= d <= 1.1
        density *= _blur(lungs_any.astype(np.float32), 0.006)
        side, amplitude = lesion["infiltrate"][0]
        upper = np.clip(1.0 - (gy - 0.12) / 0.25, 0, 1)
        patch = np.clip(_upsample(lesion["blob"], size), 0, None) * upper * lung_fields[side]
        density += amplitude * patch
        support |= patch > 0.5
    elif kind == "consolidation":
        side = lesion["side"]
        fissure_y, tilt = lesion["fissure"]
        line = gy - (fissure_y + tilt * (gx - gx.mean()) * 0.3)
        lobe = {"lower": line > 0, "upper": line < 0, "middle": (line > 0) & (line < 0.16)}[lesion["lobe"]]
        blob = 0.5 * _upsample(lesion["blob"], size) + lesion["extent"]
        region = lobe & (blob > 0.3) & (lung_fields[side] > 0.5)
        soft = _blur(region.astype(np.float32), 0.012)
        bronchi = _strokes(
            [seg for seg, _ in lesion["bronchi"]], [w * 0.5 for _, w in lesion["bronchi"]], size
        )
        inhomogeneous = 0.8 + 0.2 * np.clip(blob, -1, 1)
        density = lesion["density"] * soft * inhomogeneous * (1.0 - 0.55 * bronchi)
        support = region
    else:
        rng = np.random.default_rng(lesion["seed"])
        hila = [(0.42, 0.47), (0.58, 0.47)]
        haze = zero.copy()
        for hx, hy in hila:
            haze = np.maximum(haze, np.exp(-((gx - hx) ** 2 + (gy - hy) ** 2) / (2 * lesion["spread"] ** 2)))
        fine = rng.standard_normal((40, 40)).astype(np.float32)
        reticular = _upsample(fine, size)
        reticular = _blur(np.abs(reticular - _blur(reticular, 0.03)), 0.004)
        lung_soft = _blur(lungs_any.astype(np.float32), 0.01)
        density = lesion["density"] * haze * (0.7 + 0.6 * lesion["reticular"] * reticular) * lung_soft
        support = (haze > 0.45) & lungs_any
    return density.astype(np.float32), support & lungs_any


def render_cxr_view(anatomy: CXRAnatomy, size: int, rng: np.random.Generator, pose: bool = True) -> CXRImage:
    """Render one view of a patient: the anatomy, a small pose change, an exposure and film noise.

    Args:
        anatomy: the patient (`sample_cxr_anatomy`).
        size: output side in pixels (32 to 512).
        rng: the view's random generator (pose, exposure, noise).
        pose: apply a small rotation (+-4 degrees), scaling (+-4 %) and shift (+-3 %); the masks follow.

    Returns:
        A `CXRImage` of ``(size, size)`` arrays.
    """
    _check_size(size)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    gx, gy = np.meshgrid(coords, coords)

    half = anatomy.body_half_width
    neck = 0.1
    shoulder = np.clip(gy / anatomy.shoulder_y, 0, 1)
    width = (
        neck
        + (0.52 - neck) * np.sqrt(shoulder)
        - (0.52 - half) * np.clip((gy - anatomy.shoulder_y) / 0.4, 0, 1)
    )
    body = _blur((np.abs(gx - 0.5) < width).astype(np.float32), 0.006)

    lung_fields = [_fill([lung], size) for lung in anatomy.lungs]
    lung_fields = [(_blur(f, 0.012) > 0.5).astype(np.float32) for f in lung_fields]
    heart_field = (_ellipse(gx, gy, *anatomy.heart) <= 1.0).astype(np.float32)
    lung_fields = [f * (1.0 - heart_field) for f in lung_fields]
    lungs = np.clip(lung_fields[0] + lung_fields[1], 0, 1)

    image = 0.05 + 0.5 * body * (1.0 + 0.08 * _upsample(anatomy.texture, size))
    image += 0.12 * body * np.clip((gy - 0.55) / 0.3, 0, 1)
    image += 0.08 * np.exp(-(((gx - 0.5) / 0.035) ** 2)) * (0.85 + 0.15 * np.cos(gy * 2 * np.pi / 0.045))
    trachea = np.exp(-(((gx - 0.5 - 0.02 * (gy - 0.1)) / 0.014) ** 2)) * np.clip((0.33 - gy) / 0.05, 0, 1)
    image -= 0.09 * trachea * (gy > anatomy.shoulder_y * 0.5)
    image += 0.05 * _blur(heart_field, 0.02)

    lung_soft = _blur(lungs, 0.008)
    base_fade = np.clip((gy - 0.55) / 0.25, 0, 1) * 0.35
    darkness = anatomy.lung_darkness * (1.0 + 0.1 * _upsample(anatomy.lung_texture, size)) * (1.0 - base_fade)
    image -= darkness * lung_soft
    vessels = _strokes([seg for seg, _ in anatomy.vessels], [w for _, w in anatomy.vessels], size)
    image += 0.09 * _blur(vessels, 0.003) * lung_soft

    rib_weight = 0.35 + 0.65 * lung_soft
    ribs = _blur(_strokes(anatomy.ribs, [anatomy.rib_width] * len(anatomy.ribs), size), 0.003)
    anterior = _blur(
        _strokes(anatomy.anterior_ribs, [anatomy.rib_width * 1.2] * len(anatomy.anterior_ribs), size), 0.006
    )
    clavicles = _blur(_strokes(anatomy.clavicles, [0.024, 0.024], size), 0.003)
    image += body * (0.075 * ribs * rib_weight + 0.03 * anterior * rib_weight + 0.11 * clavicles)
    if anatomy.gastric_bubble is not None:
        bx, rx, depth = anatomy.gastric_bubble
        y_base = anatomy.lungs[1][:, 1].max() + rx * 1.1
        bubble = _ellipse(gx, gy, bx, y_base, rx * 1.3, rx, 0) <= 1.0
        image -= depth * _blur(bubble.astype(np.float32), 0.008)

    lesion_density, lesion_support = _lesion_density(anatomy, lung_fields, gx, gy, size)
    image += lesion_density

    image, masks = _pose_and_exposure(image, [lungs, lesion_support.astype(np.float32), body], rng, pose)
    return CXRImage(image=image, lung_mask=masks[0], lesion_mask=masks[1], body_mask=masks[2])


def _pose_and_exposure(
    image: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator, pose: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    size = image.shape[0]
    if pose:
        angle = rng.uniform(-4, 4)
        scale = rng.uniform(0.96, 1.04)
        shift = rng.uniform(-0.03, 0.03, 2) * size
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        matrix[:, 2] += shift
        image = cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        masks = [
            cv2.warpAffine(m, matrix, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            for m in masks
        ]
    gamma = rng.uniform(0.8, 1.25)
    contrast = rng.uniform(0.85, 1.1)
    brightness = rng.uniform(-0.05, 0.05)
    image = np.clip(image, 0, 1) ** gamma * contrast + brightness
    # Film grain is white at 256 px; a smaller image averages it (std / 4 at 64 px), a larger one shows more.
    grain = rng.standard_normal(image.shape).astype(np.float32) * (size / 256.0)
    image = image + rng.uniform(0.006, 0.02) * grain + 0.03 * _blur(grain, 0.006)
    image = _blur(image, 0.0015)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return image, [(m > 0.5).astype(np.uint8) for m in masks]


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 32 <= size <= 512:
        raise ValueError(f"phantom size must be an integer from 32 to 512, got {size!r}")


def render_cxr(rng: np.random.Generator, size: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Render one chest X-ray phantom of a new patient.

    Args:
        rng: the random generator (the only source of randomness).
        size: output side in pixels (32 to 512).
        label: one of `CXR_LABELS`.

    Returns:
        ``(image, lung_mask)``: ``(size, size)`` float32 in [0, 1] and ``(size, size)`` uint8 in {0, 1}.

    Raises:
        ValueError: unknown label or size outside 32..512.
    """
    view = render_cxr_view(sample_cxr_anatomy(rng, label), size, rng)
    return view.image, view.lung_mask
