"""Spectral Doppler phantoms: an echo machine's time-velocity display with the spectral envelope mask.

Flows `MV` (mitral inflow), `MA` (mitral annulus tissue Doppler) and `TR` (tricuspid regurgitation jet) on a
display with baseline, scale ticks, ECG trace and noise; the envelope mask is the region between the baseline
and the measured flow's envelope. Quality `good` or `low` (one to three degradations). Details: docs/design.md,
"Module notes".
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from urep.data.phantoms.cxr import _check_size

DOPPLER_FLOWS: tuple[str, ...] = ("MV", "MA", "TR")
DOPPLER_QUALITIES: tuple[str, ...] = ("good", "low")
LOW_QUALITY_PROBLEMS: tuple[str, ...] = (
    "low_gain",
    "high_gain",
    "sparse",
    "blurred",
    "clipped",
    "missing_beats",
)

# Wave timing within one cardiac cycle (R wave at 0): (sign, onset, peak time, end); sign +1 = above the
# baseline. Peak heights are drawn per patient and image.
_WAVES = {
    "MV": {"E": (1, 0.40, 0.46, 0.67), "A": (1, 0.78, 0.85, 0.98)},
    "MA": {"s'": (1, 0.08, 0.17, 0.36), "e'": (-1, 0.44, 0.50, 0.64), "a'": (-1, 0.81, 0.88, 0.98)},
    "TR": {
        "jet": (-1, 0.04, 0.22, 0.44),
        "inflow_E": (1, 0.47, 0.53, 0.67),
        "inflow_A": (1, 0.82, 0.88, 0.98),
    },
}
_MASKED = {"MV": ("E", "A"), "MA": ("s'", "e'", "a'"), "TR": ("jet",)}


@dataclass
class DopplerPatient:
    """Per-patient physiology shared by all the patient's images (relative peak heights, rhythm)."""

    heart_rate: float
    e_over_a: float
    tdi_ratio: float
    tr_peak: float
    sector: bool
    display_right: float


@dataclass
class DopplerImage:
    """One rendered Doppler image.

    Attributes:
        image: ``(size, size)`` float32 in [0, 1].
        envelope_mask: ``(size, size)`` uint8 in {0, 1}.
        baseline_row: the baseline's row in pixels.
        problems: the low-quality problems applied (empty for good quality).
    """

    image: np.ndarray
    envelope_mask: np.ndarray
    baseline_row: int
    problems: tuple[str, ...]


def sample_doppler_patient(rng: np.random.Generator) -> DopplerPatient:
    """Draw one patient's rhythm and flow ratios, and the echo machine's display style."""
    return DopplerPatient(
        heart_rate=rng.uniform(55, 100),
        e_over_a=rng.uniform(0.6, 2.0),
        tdi_ratio=rng.uniform(0.6, 1.4),
        tr_peak=rng.uniform(0.65, 0.92),
        sector=bool(rng.random() < 0.75),
        display_right=rng.uniform(0.84, 0.9),
    )


def _bump(tau: np.ndarray, onset: float, peak: float, end: float) -> np.ndarray:
    """A wave of height 1: a quarter sine up from `onset` to `peak`, a quarter cosine down to `end`."""
    rise = np.sin(0.5 * np.pi * np.clip((tau - onset) / (peak - onset), 0, 1))
    fall = np.cos(0.5 * np.pi * np.clip((tau - peak) / (end - peak), 0, 1))
    return np.where(tau < peak, rise, fall) * ((tau > onset) & (tau < end))


def _wave_heights(flow: str, patient: DopplerPatient, rng: np.random.Generator) -> dict[str, float]:
    """Peak heights as fractions of the display's half range on the wave's side of the baseline."""
    if flow == "MV":
        e = rng.uniform(0.55, 0.9)
        return {"E": e, "A": float(np.clip(e / patient.e_over_a, 0.25, 0.9))}
    if flow == "MA":
        e = rng.uniform(0.5, 0.85)
        return {"s'": rng.uniform(0.45, 0.8), "e'": e, "a'": float(np.clip(e / patient.tdi_ratio, 0.3, 0.9))}
    inflow = rng.uniform(0.08, 0.2) if rng.random() < 0.6 else 0.0
    return {"jet": patient.tr_peak * rng.uniform(0.92, 1.08), "inflow_E": inflow, "inflow_A": inflow * 0.7}


def _choose_problems(rng: np.random.Generator, quality: str) -> tuple[str, ...]:
    if quality == "good":
        return ()
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    return tuple(sorted(rng.choice(LOW_QUALITY_PROBLEMS, size=count, replace=False).tolist()))


def render_doppler_image(
    patient: DopplerPatient, size: int, flow: str, quality: str, rng: np.random.Generator
) -> DopplerImage:
    """Render one spectral Doppler image of a patient.

    Args:
        patient: the patient (`sample_doppler_patient`).
        size: output side in pixels (32 to 512).
        flow: one of `DOPPLER_FLOWS`.
        quality: one of `DOPPLER_QUALITIES`.
        rng: the image's random generator.

    Returns:
        A `DopplerImage`.

    Raises:
        ValueError: unknown flow or quality, or size outside 32..512.
    """
    _check_size(size)
    if flow not in _WAVES:
        raise ValueError(f"unknown Doppler flow {flow!r}; expected one of {DOPPLER_FLOWS}")
    if quality not in DOPPLER_QUALITIES:
        raise ValueError(f"unknown Doppler quality {quality!r}; expected one of {DOPPLER_QUALITIES}")
    problems = _choose_problems(rng, quality)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    gx, gy = np.meshgrid(coords, coords)

    top = rng.uniform(0.3, 0.38) if patient.sector else rng.uniform(0.08, 0.14)
    bottom, left, right = rng.uniform(0.94, 0.97), rng.uniform(0.02, 0.05), patient.display_right
    baseline_fraction = {"MV": (0.6, 0.82), "MA": (0.38, 0.62), "TR": (0.12, 0.32)}[flow]
    baseline = top + rng.uniform(*baseline_fraction) * (bottom - top)
    beats = rng.uniform(1.8, 3.0) * patient.heart_rate / 75.0
    phase = rng.uniform(0, 1)
    columns = (coords - left) / (right - left)
    in_display_x = (columns >= 0) & (columns <= 1)
    cycle = columns * beats + phase
    tau = cycle - np.floor(cycle)
    beat_index = np.floor(cycle).astype(int)
    n_beats = int(np.ceil(beats + phase)) + 1
    beat_gain = rng.uniform(0.93, 1.07, n_beats)
    beat_present = np.ones(n_beats, bool)
    if "missing_beats" in problems:
        beat_present[rng.choice(n_beats, size=max(1, n_beats // 2), replace=False)] = False

    heights = _wave_heights(flow, patient, rng)
    if "clipped" in problems:
        main = _MASKED[flow][0]
        heights[main] = rng.uniform(1.08, 1.4)
    jitter = rng.uniform(-0.02, 0.02)
    env_pos = np.zeros(size, np.float32)
    env_neg = np.zeros(size, np.float32)
    mask_pos = np.zeros(size, np.float32)
    mask_neg = np.zeros(size, np.float32)
    for name, (sign, onset, peak, end) in _WAVES[flow].items():
        wave = heights[name] * _bump(tau, onset + jitter, peak + jitter, end + jitter) * beat_gain[beat_index]
        wave = wave * in_display_x
        target = env_pos if sign > 0 else env_neg
        np.maximum(target, wave, out=target)
        if name in _MASKED[flow]:
            masked = mask_pos if sign > 0 else mask_neg
            np.maximum(masked, wave * beat_present[beat_index], out=masked)

    up = (baseline - gy) / (baseline - top)
    down = (gy - baseline) / (bottom - baseline)
    in_display = in_display_x[None, :] & (gy >= top) & (gy <= bottom)
    mask = in_display & (
        ((up >= 0) & (up <= np.minimum(mask_pos, 1.0)[None, :]) & (mask_pos[None, :] > 0.03))
        | ((down >= 0) & (down <= np.minimum(mask_neg, 1.0)[None, :]) & (mask_neg[None, :] > 0.03))
    )

    spectrum = _spectrum(flow, up, down, env_pos, env_neg, problems, rng)
    spectrum *= beat_present[beat_index][None, :]
    if "clipped" in problems and flow != "TR":
        wrapped = np.clip(env_pos - 1.0, 0, None)
        spectrum += 0.8 * ((down >= 1.0 - wrapped[None, :]) & (down <= 1.0) & (wrapped[None, :] > 0))
    image = _display(
        spectrum * in_display, gx, gy, top, bottom, left, right, baseline, patient, tau, problems, rng
    )
    return DopplerImage(
        image=image, envelope_mask=mask.astype(np.uint8), baseline_row=int(baseline * size), problems=problems
    )


def _spectrum(
    flow: str,
    up: np.ndarray,
    down: np.ndarray,
    env_pos: np.ndarray,
    env_neg: np.ndarray,
    problems: tuple[str, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Spectral intensity inside the envelopes: velocity fraction r = v / envelope in [0, 1] per pixel."""
    edge = rng.uniform(0.02, 0.04) * (rng.uniform(3.0, 6.0) if "blurred" in problems else 1.0)
    out = np.zeros_like(up)
    for rel, env in ((up, env_pos), (down, env_neg)):
        env = np.maximum(env, 1e-3)[None, :]
        r = rel / env
        inside = (rel >= 0) & (env > 0.02)
        if flow == "MA":
            profile = 0.1 + 0.9 * np.exp(-(((1.0 - r) / 0.15) ** 2))
        elif flow == "TR":
            profile = 0.55 + 0.45 * r
        else:
            profile = 0.3 + 0.7 * np.clip(r, 0, 1) ** 2
        soft = 1.0 / (1.0 + np.exp(np.clip((r - 1.0) * env / edge, -50, 50)))
        out += inside * profile * soft
    shape = 1.2 if "sparse" in problems else rng.uniform(3.0, 5.0)
    speckle = rng.gamma(shape, 1.0 / shape, out.shape).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (1, 3), 0)
    if "sparse" in problems:
        speckle *= rng.random(out.shape) > rng.uniform(0.3, 0.6)
    column = rng.gamma(8.0, 1.0 / 8.0, (1, out.shape[1])).astype(np.float32)
    return (out * speckle * column).astype(np.float32)


def _display(
    spectrum: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    top: float,
    bottom: float,
    left: float,
    right: float,
    baseline: float,
    patient: DopplerPatient,
    tau: np.ndarray,
    problems: tuple[str, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Gain, background noise, baseline, ticks, ECG and sector thumbnail around the spectrum."""
    size = gx.shape[0]
    gain = rng.uniform(0.75, 1.0)
    noise_level = rng.uniform(0.01, 0.05)
    if "low_gain" in problems:
        gain = rng.uniform(0.22, 0.45)
    if "high_gain" in problems:
        gain = rng.uniform(1.3, 1.8)
        noise_level = rng.uniform(0.15, 0.3)
    in_display = (gx >= left) & (gx <= right) & (gy >= top) & (gy <= bottom)
    noise = rng.gamma(1.5, 1.0 / 1.5, gx.shape).astype(np.float32) * noise_level * in_display
    image = np.clip(spectrum * gain + noise, 0, 1) ** rng.uniform(0.8, 1.1)

    canvas = np.zeros((size, size), np.uint8)
    thickness = max(1, size // 256)
    line_level = int(rng.uniform(120, 200))
    px = lambda v: int(round(v * size * 16))  # noqa: E731 - fixed-point pixel coordinate for cv2 shift=4
    cv2.line(
        canvas, (px(left), px(baseline)), (px(right), px(baseline)), line_level, thickness, cv2.LINE_AA, 4
    )
    step = (bottom - top) / rng.integers(6, 10)
    tick = baseline - step * np.floor((baseline - top) / step)
    while tick <= bottom:
        cv2.line(
            canvas,
            (px(right + 0.012), px(tick)),
            (px(right + 0.03), px(tick)),
            line_level,
            thickness,
            cv2.LINE_AA,
            4,
        )
        tick += step
    for x in np.arange(left, right, 0.1):
        cv2.line(
            canvas,
            (px(x), px(bottom + 0.01)),
            (px(x), px(bottom + 0.02)),
            line_level,
            thickness,
            cv2.LINE_AA,
            4,
        )

    ecg_y = top - 0.035 if patient.sector else max(top - 0.04, 0.02)
    t = np.linspace(0, 1, 4 * size)
    columns = left + t * (right - left)
    tau_ecg = np.interp(columns, gx[0], tau)
    ecg = (
        (np.exp(-(((tau_ecg - 0.0) / 0.012) ** 2)) + np.exp(-(((tau_ecg - 1.0) / 0.012) ** 2))) * 0.05
        + np.exp(-(((tau_ecg - 0.3) / 0.05) ** 2)) * 0.012
        + np.exp(-(((tau_ecg - 0.85) / 0.03) ** 2)) * 0.006
    )
    pts = np.stack([columns, ecg_y - ecg + rng.normal(0, 0.0015, t.shape)], 1)
    cv2.polylines(
        canvas, [np.round(pts * size * 16).astype(np.int32)], False, line_level, thickness, cv2.LINE_AA, 4
    )
    image = np.maximum(image, canvas.astype(np.float32) / 255.0)

    if patient.sector:
        image = np.maximum(image, _sector(gx, gy, top, rng))
    return np.clip(image, 0, 1).astype(np.float32)


def _sector(gx: np.ndarray, gy: np.ndarray, top: float, rng: np.random.Generator) -> np.ndarray:
    """A small 2-D echo sector (fan of speckle) above the spectral display."""
    apex_x, apex_y = rng.uniform(0.4, 0.6), 0.02
    radius = top - 0.07
    dx, dy = gx - apex_x, gy - apex_y
    r = np.sqrt(dx**2 + dy**2)
    angle = np.arctan2(dx, dy)
    fan = (r < radius) & (np.abs(angle) < 0.6)
    size = gx.shape[0]
    tissue = cv2.resize(rng.random((8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    speckle = rng.gamma(1.0, 1.0, gx.shape).astype(np.float32)
    cavity = np.exp(-(((r / radius - 0.6) / 0.2) ** 2) - (angle / 0.25) ** 2)
    return (fan * np.clip(0.3 * tissue + 0.1, 0, 1) * speckle * (1 - 0.8 * cavity) * 0.8).astype(np.float32)


def render_doppler(
    rng: np.random.Generator, size: int, flow: str, quality: str
) -> tuple[np.ndarray, np.ndarray]:
    """Render one spectral Doppler phantom of a new patient.

    Args:
        rng: the random generator (the only source of randomness).
        size: output side in pixels (32 to 512).
        flow: one of `DOPPLER_FLOWS` (``MV``, ``MA``, ``TR``).
        quality: ``good`` or ``low``.

    Returns:
        ``(image, envelope_mask)``: ``(size, size)`` float32 in [0, 1] and ``(size, size)`` uint8 in {0, 1}.

    Raises:
        ValueError: unknown flow or quality, or size outside 32..512.
    """
    result = render_doppler_image(sample_doppler_patient(rng), size, flow, quality, rng)
    return result.image, result.envelope_mask
