"""Every number the papers report, as data, so reports can print them beside the measured ones.

Sources: `journal` (Zamzmi, Rajaraman, Antani, "UMS-Rep: Unified modality-specific representation for
efficient medical image analysis", Tables 1-10), `preprint` ("Unified representation (U-Rep) ...", Tables 1-5)
and `multimix` (Haque et al., ISBI 2021, Table 2, the rows readable from its text). Rows are keyed by
`method`, `task` and urep's metric names (docs/design.md, "Module notes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["PaperRow", "PaperTable", "PAPER_TABLES", "paper_value", "paper_row", "STRATEGY_LABELS",
           "TASK_LABELS"]


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: `values[metric]` for one `(method, task, setting)`."""

    method: str
    task: str
    values: dict[str, float]
    setting: str = ""
    label: str = ""


@dataclass(frozen=True)
class PaperTable:
    """One table of one paper."""

    key: str
    paper: Literal["journal", "preprint", "multimix"]
    number: str
    title: str
    kind: Literal["datasets", "denoising", "performance", "cost", "training", "comparison", "multimix"]
    metrics: tuple[str, ...]
    rows: tuple[PaperRow, ...]
    notes: str = ""
    tasks: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", frozenset(r.task for r in self.rows))

    @property
    def citation(self) -> str:
        return f"{PAPERS[self.paper]}, {self.number}"


PAPERS = {
    "journal": "Zamzmi et al., UMS-Rep (journal)",
    "preprint": "Zamzmi et al., U-Rep (preprint)",
    "multimix": "Haque et al., MultiMix (ISBI 2021)",
}

STRATEGY_LABELS = {
    "independent": "Independent", "alternating": "Alternating", "joint": "Joint", "baseline": "Baseline",
    "cross_stitch": "Cross-stitch", "urep": "U-Rep", "traditional": "Traditional", "proposed": "Proposed",
    "multimix": "MultiMix",
}

TASK_LABELS = {
    "lung_segmentation": "Lung segmentation", "abnormality_classification": "Abnormality classification",
    "bacterial_vs_normal": "Bacterial vs normal", "viral_vs_normal": "Viral vs normal",
    "bacterial_vs_viral": "Bacterial vs viral", "envelope_segmentation": "Envelope segmentation",
    "quality_assessment": "Quality assessment", "flow_classification": "Flow classification",
    "mv_vs_ma": "MV vs MA", "mv_vs_tr": "MV vs TR", "ma_vs_tr": "MA vs TR", "source": "Shared source",
    "denoiser": "Separate denoising model", "total": "Total", "denoising": "Denoising",
}


def _rows(method: str, metrics: tuple[str, ...], data: dict[str, tuple[float, ...]]) -> tuple[PaperRow, ...]:
    return tuple(PaperRow(method, task, dict(zip(metrics, values, strict=True))) for task, values in data.items())


def _perf(metrics, by_method):
    rows = []
    for method, data in by_method.items():
        rows.extend(_rows(method, metrics, data))
    return tuple(rows)


def _cost(proposed: dict[str, tuple[float, int]], baseline: dict[str, tuple[float, int]]) -> tuple[PaperRow, ...]:
    rows = []
    for method, data in (("proposed", proposed), ("baseline", baseline)):
        for task, (minutes, params) in data.items():
            rows.append(PaperRow(method, task, {"minutes": minutes, "params": params}))
    return tuple(rows)


_ACC_F_IOU_MCC = ("accuracy", "f1", "iou", "mcc")
_ACC_F_MCC = ("accuracy", "f1", "mcc")
_NA = float("nan")

_TABLES = (
    PaperTable(
        "journal_table1", "journal", "Table 1", "Datasets", "datasets",
        ("images", "normal", "abnormal", "bacterial", "viral", "masks", "MV", "MA", "TR", "quality", "patients"),
        (
            PaperRow("dataset", "rsna", {"images": 26684}),
            PaperRow("dataset", "shenzhen", {"images": 662, "normal": 336, "abnormal": 326, "masks": 566}),
            PaperRow("dataset", "montgomery", {"images": 138, "normal": 80, "abnormal": 58, "masks": 138}),
            PaperRow("dataset", "pediatric_train", {"images": 5232, "normal": 1349, "bacterial": 2538,
                                                    "viral": 1345}),
            PaperRow("dataset", "pediatric_test", {"images": 624, "normal": 234, "bacterial": 242, "viral": 148}),
            PaperRow("dataset", "doppler", {"images": 2444, "MV": 855, "MA": 490, "TR": 1099, "quality": 814,
                                            "patients": 100}),
        ),
        notes="Doppler counts from the journal's text (private NIH data set).",
    ),
    PaperTable(
        "journal_table2", "journal", "Table 2", "Denoising with the shared CDAE (test set)", "denoising",
        ("psnr", "ssim", "ms_ssim"),
        (
            PaperRow("gaussian_1", "denoising", {"psnr": 39.05, "ssim": 0.96, "ms_ssim": 0.99}, label="Gaussian 1"),
            PaperRow("gaussian_2", "denoising", {"psnr": 35.38, "ssim": 0.91, "ms_ssim": 0.98}, label="Gaussian 2"),
            PaperRow("gaussian_3", "denoising", {"psnr": 32.75, "ssim": 0.89, "ms_ssim": 0.95}, label="Gaussian 3"),
            PaperRow("gaussian_4", "denoising", {"psnr": 30.54, "ssim": 0.85, "ms_ssim": 0.91}, label="Gaussian 4"),
            PaperRow("gaussian_5", "denoising", {"psnr": 28.35, "ssim": 0.79, "ms_ssim": 0.88}, label="Gaussian 5"),
            PaperRow("poisson_1", "denoising", {"psnr": 33.37, "ssim": 0.93, "ms_ssim": 0.97}, label="Poisson"),
        ),
        notes="The noise parameters were lost from the journal's text; rows are matched by order "
              "(i-th Gaussian level of the run to the i-th Gaussian row).",
    ),
    PaperTable(
        "journal_table3", "journal", "Table 3",
        "CXR heterogeneous tasks: heads on Shenzhen (10-fold CV), tested on Montgomery", "performance",
        _ACC_F_IOU_MCC,
        _perf(_ACC_F_IOU_MCC, {
            "independent": {"lung_segmentation": (0.99, 0.96, 0.98, _NA),
                            "abnormality_classification": (0.86, 0.83, _NA, 0.68)},
            "alternating": {"lung_segmentation": (0.99, 0.95, 0.96, _NA),
                            "abnormality_classification": (0.85, 0.82, _NA, 0.66)},
            "joint": {"lung_segmentation": (0.92, 0.92, 0.94, _NA),
                      "abnormality_classification": (0.83, 0.80, _NA, 0.63)},
            "baseline": {"lung_segmentation": (0.97, 0.91, 0.95, _NA),
                         "abnormality_classification": (0.80, 0.80, _NA, 0.60)},
        }),
        notes="McNemar p < 0.05: independent vs joint significant, independent vs alternating not; "
              "independent vs baseline significant.",
    ),
    PaperTable(
        "journal_table4", "journal", "Table 4", "CXR heterogeneous tasks: training time and parameters", "cost",
        ("minutes", "params"),
        _cost(
            {"source": (302.20, 800067), "lung_segmentation": (8.11, 786497),
             "abnormality_classification": (2.51, 295715), "total": (312.82, 1882279)},
            {"denoiser": (302.20, 800067), "lung_segmentation": (148.02, 786497),
             "abnormality_classification": (9.25, 1573506), "total": (459.47, 3160070)},
        ),
    ),
    PaperTable(
        "journal_table5", "journal", "Table 5",
        "Pediatric pneumonia homogeneous tasks (10-fold CV on the train set, hold-out test set)", "performance",
        _ACC_F_MCC,
        _perf(_ACC_F_MCC, {
            "independent": {"bacterial_vs_normal": (0.95, 0.95, 0.90), "viral_vs_normal": (0.95, 0.92, 0.88),
                            "bacterial_vs_viral": (0.81, 0.76, 0.56)},
            "alternating": {"bacterial_vs_normal": (0.96, 0.96, 0.92), "viral_vs_normal": (0.96, 0.93, 0.90),
                            "bacterial_vs_viral": (0.82, 0.77, 0.58)},
            "joint": {"bacterial_vs_normal": (0.96, 0.95, 0.91), "viral_vs_normal": (0.97, 0.94, 0.92),
                      "bacterial_vs_viral": (0.83, 0.80, 0.62)},
            "baseline": {"bacterial_vs_normal": (0.94, 0.94, 0.89), "viral_vs_normal": (0.93, 0.90, 0.86),
                         "bacterial_vs_viral": (0.80, 0.75, 0.54)},
        }),
        notes="McNemar p < 0.05: joint vs independent significant except bacterial vs normal; joint vs "
              "baseline significant for all tasks.",
    ),
    PaperTable(
        "journal_table6", "journal", "Table 6", "Pediatric homogeneous tasks: training time and parameters",
        "cost", ("minutes", "params"),
        _cost(
            {"bacterial_vs_normal": (1.90, 295715), "viral_vs_normal": (1.75, 295715),
             "bacterial_vs_viral": (1.16, 295715), "total": (4.81, 887145)},
            {"bacterial_vs_normal": (12.75, 1573506), "viral_vs_normal": (9.21, 1573506),
             "bacterial_vs_viral": (12.19, 1573506), "total": (34.15, 4720518)},
        ),
        notes="The paper's proposed total (4.81 min, 887,145 parameters) counts the three heads only; its "
              "baseline total counts '4 tasks'.",
    ),
    PaperTable(
        "journal_table7", "journal", "Table 7", "Doppler heterogeneous tasks", "performance", _ACC_F_IOU_MCC,
        _perf(_ACC_F_IOU_MCC, {
            "independent": {"envelope_segmentation": (0.97, 0.95, 0.98, _NA),
                            "quality_assessment": (0.97, 0.96, _NA, 0.92),
                            "flow_classification": (0.93, 0.91, _NA, 0.85)},
            "alternating": {"envelope_segmentation": (0.96, 0.94, 0.98, _NA),
                            "quality_assessment": (0.95, 0.91, _NA, 0.87),
                            "flow_classification": (0.91, 0.90, _NA, 0.82)},
            "joint": {"envelope_segmentation": (0.91, 0.93, 0.94, _NA),
                      "quality_assessment": (0.93, 0.88, _NA, 0.83),
                      "flow_classification": (0.92, 0.90, _NA, 0.84)},
            "baseline": {"envelope_segmentation": (0.93, 0.92, 0.95, _NA),
                         "quality_assessment": (0.88, 0.85, _NA, 0.78),
                         "flow_classification": (0.91, 0.88, _NA, 0.81)},
        }),
        notes="McNemar p < 0.05: independent vs joint and independent vs baseline significant.",
    ),
    PaperTable(
        "journal_table8", "journal", "Table 8", "Doppler heterogeneous tasks: training time and parameters",
        "cost", ("minutes", "params"),
        _cost(
            {"source": (28.19, 460115), "envelope_segmentation": (5.80, 786497),
             "quality_assessment": (3.00, 295715), "flow_classification": (1.78, 295715),
             "total": (38.77, 1838042)},
            {"envelope_segmentation": (130.02, 786497), "quality_assessment": (29.34, 1573506),
             "flow_classification": (36.27, 1573506), "total": (195.63, 3933509)},
        ),
    ),
    PaperTable(
        "journal_table9", "journal", "Table 9", "Doppler homogeneous tasks (flow-type pairs)", "performance",
        _ACC_F_MCC,
        _perf(_ACC_F_MCC, {
            "independent": {"mv_vs_ma": (0.92, 0.91, 0.83), "mv_vs_tr": (0.95, 0.94, 0.88),
                            "ma_vs_tr": (0.97, 0.96, 0.92)},
            "alternating": {"mv_vs_ma": (0.94, 0.94, 0.87), "mv_vs_tr": (0.96, 0.96, 0.91),
                            "ma_vs_tr": (0.98, 0.96, 0.93)},
            "joint": {"mv_vs_ma": (0.95, 0.95, 0.89), "mv_vs_tr": (0.97, 0.96, 0.93),
                      "ma_vs_tr": (0.98, 0.98, 0.95)},
            "baseline": {"mv_vs_ma": (0.91, 0.91, 0.81), "mv_vs_tr": (0.94, 0.93, 0.86),
                         "ma_vs_tr": (0.98, 0.96, 0.93)},
        }),
        notes="McNemar p < 0.05: joint vs independent and joint vs baseline significant.",
    ),
    PaperTable(
        "journal_table10", "journal", "Table 10", "Doppler homogeneous tasks: training time and parameters",
        "cost", ("minutes", "params"),
        _cost(
            {"source": (28.19, 460115), "mv_vs_ma": (2.42, 295715), "mv_vs_tr": (1.25, 295715),
             "ma_vs_tr": (1.83, 295715), "total": (33.69, 1347260)},
            {"mv_vs_ma": (16.67, 1573506), "mv_vs_tr": (10.85, 1573506), "ma_vs_tr": (9.25, 1573506),
             "total": (36.77, 4720518)},
        ),
    ),
    PaperTable(
        "preprint_denoising", "preprint", "Noise reduction (text)", "CDAE denoising, Gaussian sigma 0.03",
        "denoising", ("psnr",),
        (PaperRow("gaussian_1", "denoising", {"psnr": 39.74}, label="Gaussian 0.03"),),
        notes="The preprint computes PSNR between the noisy input and the reconstruction.",
    ),
    PaperTable(
        "preprint_table1", "preprint", "Table 1", "U-Rep 1 training: validation loss and time", "training",
        ("val_loss", "seconds"),
        (
            PaperRow("urep", "source", {"val_loss": 0.0001, "seconds": 18132.0}),
            PaperRow("urep", "lung_segmentation", {"val_loss": 0.0649, "seconds": 886.92}),
            PaperRow("urep", "abnormality_classification", {"val_loss": 0.4170, "seconds": 210.39}),
            PaperRow("urep", "total", {"seconds": 19229.31}),
            PaperRow("traditional", "lung_segmentation", {"val_loss": 0.1016, "seconds": 4238.98}),
            PaperRow("traditional", "abnormality_classification", {"val_loss": 0.5185, "seconds": 305.72}),
            PaperRow("traditional", "total", {"seconds": 22676.7}),
        ),
        notes="Totals from the text (the traditional total includes a separate noise-reduction model).",
    ),
    PaperTable(
        "preprint_table2", "preprint", "Table 2", "U-Rep 1 lung segmentation and abnormality classification",
        "performance", ("accuracy", "auc", "sensitivity", "precision", "f1", "iou"),
        (
            PaperRow("urep", "lung_segmentation", {"accuracy": 0.9871, "iou": 0.9771}),
            PaperRow("urep", "abnormality_classification", {"accuracy": 0.8292, "auc": 0.8800,
                                                            "sensitivity": 0.8292, "precision": 0.8308,
                                                            "f1": 0.8288}),
            PaperRow("traditional", "lung_segmentation", {"accuracy": 0.9702, "iou": 0.9512}),
            PaperRow("traditional", "abnormality_classification", {"accuracy": 0.800, "auc": 0.8500,
                                                                   "sensitivity": 0.7990, "precision": 0.8043,
                                                                   "f1": 0.7989}),
        ),
    ),
    PaperTable(
        "preprint_table3", "preprint", "Table 3", "U-Rep 2 training: validation loss, accuracy and time",
        "training", ("val_loss", "val_accuracy", "seconds"),
        (
            PaperRow("urep", "flow_classification", {"val_loss": 0.0035, "val_accuracy": 1.0, "seconds": 1871.78}),
            PaperRow("urep", "quality_assessment", {"val_loss": 0.2943, "val_accuracy": 0.9318,
                                                    "seconds": 1039.14}),
            PaperRow("urep", "envelope_segmentation", {"val_loss": 0.2219, "val_accuracy": 0.9768,
                                                       "seconds": 3107.04}),
            PaperRow("traditional", "flow_classification", {"val_loss": 0.0035, "val_accuracy": 1.0,
                                                            "seconds": 1871.78}),
            PaperRow("traditional", "quality_assessment", {"val_loss": 0.3458, "val_accuracy": 0.9035,
                                                           "seconds": 1978.95}),
            PaperRow("traditional", "envelope_segmentation", {"val_loss": 0.2252, "val_accuracy": 0.9528,
                                                              "seconds": 6035.92}),
        ),
    ),
    PaperTable(
        "preprint_table4", "preprint", "Table 4", "U-Rep 2 quality assessment and envelope segmentation",
        "performance", ("accuracy", "auc", "sensitivity", "precision", "f1", "iou"),
        (
            PaperRow("urep", "flow_classification", {"accuracy": 1.0, "auc": 1.0, "sensitivity": 1.0,
                                                     "precision": 1.0, "f1": 1.0}),
            PaperRow("urep", "quality_assessment", {"accuracy": 0.9139, "auc": 0.9800, "sensitivity": 1.0,
                                                    "precision": 0.8125, "f1": 0.9166}),
            PaperRow("urep", "envelope_segmentation", {"accuracy": 0.9568, "iou": 0.972}),
            PaperRow("traditional", "quality_assessment", {"accuracy": 0.8931, "auc": 0.8800,
                                                           "sensitivity": 0.9139, "precision": 0.9257,
                                                           "f1": 0.9027}),
            PaperRow("traditional", "envelope_segmentation", {"accuracy": 0.9357, "iou": 0.954}),
        ),
        notes="The flow-classification row is the source task itself (the representation).",
    ),
    PaperTable(
        "preprint_table5", "preprint", "Table 5", "U-Rep 2 vs Taskonomy and Models Genesis (Doppler)",
        "comparison", ("accuracy", "auc", "f1", "iou"),
        _perf(("accuracy", "auc", "f1"), {
            "urep": {"flow_classification": (1.0, 1.0, 1.0), "quality_assessment": (0.91, 0.98, 0.92)},
            "taskonomy": {"flow_classification": (0.93, 0.94, 0.97), "quality_assessment": (0.87, 0.88, 0.84)},
            "genesis": {"flow_classification": (0.97, 0.91, 0.91), "quality_assessment": (0.93, 0.91, 0.87)},
        }) + _perf(("accuracy", "iou"), {
            "urep": {"envelope_segmentation": (0.95, 0.97)},
            "taskonomy": {"envelope_segmentation": (0.83, 0.81)},
            "genesis": {"envelope_segmentation": (0.95, 0.92)},
        }),
    ),
)


def _multimix_rows() -> tuple[PaperRow, ...]:
    cls_metrics = ("accuracy", "f1_normal", "f1_pneumonia")
    seg_metrics = ("dice", "hausdorff", "ssim")
    rows = []
    unet = {"10": ((0.634, 2.899, 0.810), (0.555, 8.691, 0.680)),
            "50": ((0.855, 0.341, 0.904), (0.763, 2.895, 0.870)),
            "full": ((0.915, 0.104, 0.929), (0.838, 1.414, 0.929))}
    for budget, (ind, cross) in unet.items():
        rows.append(PaperRow("unet", "in_domain", dict(zip(seg_metrics, ind, strict=True)), setting=f"cls=0,seg={budget}"))
        rows.append(PaperRow("unet", "cross_domain", dict(zip(seg_metrics, cross, strict=True)), setting=f"cls=0,seg={budget}"))
    encoders = {
        "enc": {"100": ((0.732, 0.424, 0.806), (0.352, 0.070, 0.506)),
                "1000": ((0.773, 0.546, 0.842), (0.390, 0.192, 0.508)),
                "full": ((0.737, 0.534, 0.838), (0.434, 0.296, 0.524))},
        "enc_ssl": {"100": ((0.780, 0.570, 0.844), (0.402, 0.222, 0.510)),
                    "1000": ((0.822, 0.692, 0.876), (0.486, 0.380, 0.530)),
                    "full": ((0.817, 0.680, 0.872), (0.510, 0.472, 0.538))},
    }
    for model, budgets in encoders.items():
        for budget, (ind, cross) in budgets.items():
            rows.append(PaperRow(model, "in_domain", dict(zip(cls_metrics, ind, strict=True)), setting=f"cls={budget},seg=0"))
            rows.append(PaperRow(model, "cross_domain", dict(zip(cls_metrics, cross, strict=True)),
                                 setting=f"cls={budget},seg=0"))
    multimix = {
        ("100", "10"): (0.800, 0.594, 0.856, 0.954, 0.695, 0.938, 0.440, 0.164, 0.510, 0.857, 1.227, 0.863),
        ("100", "50"): (0.824, 0.613, 0.854, 0.971, 0.681, 0.951, 0.370, 0.036, 0.510, 0.889, 1.061, 0.890),
        ("100", "full"): (0.792, 0.593, 0.854, 0.973, 0.636, 0.954, 0.500, 0.300, 0.510, 0.899, 0.647, 0.906),
        ("1000", "10"): (0.817, 0.647, 0.865, 0.954, 0.902, 0.932, 0.520, 0.386, 0.530, 0.862, 1.307, 0.878),
        ("1000", "50"): (0.825, 0.650, 0.860, 0.970, 0.811, 0.950, 0.540, 0.500, 0.536, 0.912, 1.293, 0.907),
        ("1000", "full"): (0.830, 0.586, 0.856, 0.974, 0.643, 0.953, 0.570, 0.620, 0.510, 0.936, 0.803, 0.932),
        ("full", "10"): (0.840, 0.730, 0.880, 0.954, 0.621, 0.935, 0.550, 0.430, 0.534, 0.886, 0.746, 0.894),
        ("full", "50"): (0.854, 0.760, 0.890, 0.972, 0.692, 0.956, 0.560, 0.570, 0.550, 0.935, 0.515, 0.930),
    }
    metrics = cls_metrics + seg_metrics
    for (cls_budget, seg_budget), values in multimix.items():
        setting = f"cls={cls_budget},seg={seg_budget}"
        rows.append(PaperRow("multimix", "in_domain", dict(zip(metrics, values[:6], strict=True)), setting=setting))
        rows.append(PaperRow("multimix", "cross_domain", dict(zip(metrics, values[6:], strict=True)), setting=setting))
    return tuple(rows)


_TABLES += (
    PaperTable(
        "multimix_table2", "multimix", "Table 2", "MultiMix: classification and segmentation vs label budget",
        "multimix", ("accuracy", "f1_normal", "f1_pneumonia", "dice", "hausdorff", "ssim"), _multimix_rows(),
        notes="In-domain: CheX classification, JSRT segmentation; cross-domain: NIH subset classification, "
              "Montgomery segmentation. Mean of 5 repeats. UMTL/UMTLS rows and the MultiMix full/full row "
              "are not recoverable from the text extraction.",
    ),
)

PAPER_TABLES: dict[str, PaperTable] = {t.key: t for t in _TABLES}


def paper_row(table: str, method: str, task: str, setting: str = "") -> PaperRow | None:
    """The row of paper table `table` for `(method, task, setting)`, or None.

    Raises:
        KeyError: unknown table key (names the known ones).
    """
    if table not in PAPER_TABLES:
        raise KeyError(f"unknown paper table {table!r}; known: {sorted(PAPER_TABLES)}")
    for row in PAPER_TABLES[table].rows:
        if row.method == method and row.task == task and row.setting == setting:
            return row
    return None


def paper_value(table: str, method: str, task: str, metric: str, setting: str = "") -> float | None:
    """One paper number, or None where the paper reports none (missing row, metric, or a '-' cell).

    Example:
        >>> paper_value("journal_table3", "independent", "lung_segmentation", "iou")
        0.98
    """
    row = paper_row(table, method, task, setting)
    if row is None:
        return None
    value = row.values.get(metric)
    if value is None or value != value:
        return None
    return value
