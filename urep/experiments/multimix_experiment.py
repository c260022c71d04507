"""MultiMix experiments: `experiment: multimix` and `experiment: urep_vs_multimix`.

`multimix` trains each configured MultiMix variant (Haque et al. 2021, Table 2 ablations) at each label budget
and tests it in-domain and cross-domain. `urep_vs_multimix` also trains U-Rep on the same splits and budgets
(source once, heads per budget) and compares both with the same scores, McNemar (classification) and Wilcoxon
on per-image Dice (segmentation). Results go to `results.json` (`data`, `multimix.runs`, `statistics`,
`models`, `denoising`; docs/design.md, "Module notes"); choices: docs/choices.md, "MultiMix against U-Rep".
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from urep.experiments.config import MULTIMIX_EXPERIMENTS, ExperimentConfig, TaskConfig
from urep.experiments.sources import TaskArrays, task_frame

logger = logging.getLogger(__name__)

__all__ = ["run_multimix_experiment", "budget_setting", "PAPER_MODEL_NAMES"]

SEGMENTATION_TASK = "segmentation"
CLASSIFICATION_TASK = "classification"
PAPER_MODEL_NAMES = {"encoder": "enc", "encssl": "enc_ssl"}
"""Variant -> model name in `urep.experiments.paper_numbers` (MultiMix Table 2 rows); others are the same."""


def budget_setting(segmentation: int | str | None, classification: int | str | None) -> str:
    """The paper-table key of a budget, e.g. `cls=100,seg=10` (`full` for all, `0` for an unused task)."""
    def part(n: int | str | None) -> str:
        return "0" if n is None else ("full" if n == "all" else str(n))

    return f"cls={part(classification)},seg={part(segmentation)}"


def _budgets(config: ExperimentConfig) -> list[tuple[int | str, int | str]]:
    mm = config.multimix
    if mm.label_budgets:
        return [tuple(pair) for pair in mm.label_budgets]
    return [(mm.segmentation_labels or "all", mm.classification_labels or "all")]


def _tasks(config: ExperimentConfig) -> tuple[TaskConfig, TaskConfig]:
    """The segmentation and classification tasks: `tasks` when configured, else from the `multimix` section."""
    mm = config.multimix
    by_kind = {t.kind: t for t in config.tasks}
    if len(by_kind) != len(config.tasks) or (config.tasks and set(by_kind) != {"segmentation", "classification"}):
        raise ValueError(f"a MultiMix experiment takes one segmentation and one classification task, got "
                         f"{[(t.name, t.kind) for t in config.tasks]}")
    seg = by_kind.get("segmentation") or TaskConfig(SEGMENTATION_TASK, "segmentation", mm.segmentation_data)
    cls = by_kind.get("classification") or TaskConfig(
        CLASSIFICATION_TASK, "classification", mm.classification_data, label=mm.classification_label,
        classes=tuple(mm.classes))
    return seg, cls


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`multimix.options` -> (trainer fields, model keyword arguments), rejecting unknown keys by name."""
    from urep.models.multimix import multimix
    from urep.training.multimix import MultiMixConfig

    options = dict(options)
    model = dict(options.pop("model", {}) or {})
    known = {f.name for f in dataclasses.fields(MultiMixConfig)} - {"variant", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"multimix.options: unknown trainer keys {unknown}; expected some of {sorted(known)} "
                         "(network arguments go under `model`)")
    allowed = set(inspect.signature(multimix).parameters) - {"input_shape", "n_classes", "saliency_bridge", "name"}
    unknown = sorted(set(model) - allowed)
    if unknown:
        raise ValueError(f"multimix.options.model: unknown keys {unknown}; expected some of {sorted(allowed)}")
    return options, model


class MultiMixExperiment:
    """Runs a `multimix` or `urep_vs_multimix` experiment inside a prepared run directory.

    Args:
        config: the validated config (`experiment` is `multimix` or `urep_vs_multimix`).
        run_dir: the run directory.
        data_root: folder the data sources' `root` is relative to.
        resume: restore U-Rep's finished phases from their checkpoints.
    """

    def __init__(self, config: ExperimentConfig, run_dir: Path, data_root: str | None = None,
                 resume: bool = False) -> None:
        from urep.experiments.pipeline import UrepPipeline

        if config.experiment not in MULTIMIX_EXPERIMENTS or config.multimix is None:
            raise ValueError(f"not a MultiMix experiment: {config.experiment!r}")
        self.config = config
        self.run_dir = Path(run_dir)
        self.with_urep = config.experiment == "urep_vs_multimix"
        self.seg_task, self.cls_task = _tasks(config)
        self.trainer_options, self.model_options = _split_options(config.multimix.options)
        pipeline_config = dataclasses.replace(
            config, tasks=(self.seg_task, self.cls_task),
            cross_validation=dataclasses.replace(config.cross_validation, folds=0),
            baseline=dataclasses.replace(config.baseline, enabled=False))
        self.pipeline = UrepPipeline(pipeline_config, self.run_dir, data_root, resume=resume)
        self.classes = tuple(self.cls_task.classes)
        self.cross: dict[str, TaskArrays] = {}
        self.train_rows: dict[str, np.ndarray] = {}
        self.trained: dict[tuple[str, str], dict] = {}
        self.results: dict[str, Any] = {"models": [], "multimix": {"runs": []}, "statistics": []}
        self.seeds = tuple(config.multimix.seeds) or (config.seed,)

    # -- data ----------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        """Split every source by patient, read the task arrays and the cross-domain test sets."""
        pipeline = self.pipeline
        pipeline.load_data()
        self.results["data"] = pipeline.results["data"]
        self.train_rows = {t.name: pipeline.task_data[t.name].folds[0][0] for t in (self.seg_task, self.cls_task)}
        notes = []
        for task in (self.seg_task, self.cls_task):
            data = pipeline.task_data[task.name]
            column = self.config.data[task.data].split_column
            how = f"official `{column}` column" if column else \
                f"random patient split {'/'.join(f'{f:g}' for f in self.config.split)} (seed {self.config.seed})"
            notes.append(f"{task.data} ({task.kind}) {how}: train {len(data.folds[0][0])} / val "
                         f"{len(data.folds[0][1])} / test {len(data.test)}")
        self.results["data"]["split_note"] = "; ".join(notes)
        mm = self.config.multimix
        for task, source in ((self.seg_task, mm.cross_domain_segmentation),
                             (self.cls_task, mm.cross_domain_classification)):
            if source is None:
                continue
            self.cross[task.name] = pipeline._read(task_frame(pipeline.frames[source], task, source), task)
            self.results["data"]["tasks"][f"{task.name} (cross-domain: {source})"] = {
                "train": 0, "val": 0, "test": int(len(self.cross[task.name]))}

    def _budget_split(self, task: TaskConfig, n: int | str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(labelled, unlabelled) rows of the task's training patients; `all` -> (every row, every row)."""
        from urep.data.splits import label_budget

        data = self.pipeline.task_data[task.name]
        train = self.train_rows[task.name]
        if n != "all" and n > len(train):
            raise ValueError(f"label budget {n} for task {task.name!r} exceeds its {len(train)} training images; "
                             "lower multimix.label_budgets or use `all`")
        stratify = data.pool.labels[train] if task.kind == "classification" else None
        labelled, unlabelled = label_budget(train, n, seed=seed, stratify=stratify)
        return labelled, (unlabelled if len(unlabelled) else labelled)

    # -- MultiMix ------------------------------------------------------------------------------------------
    def _multimix_data(self, seg_rows: tuple[np.ndarray, np.ndarray], cls_rows: tuple[np.ndarray, np.ndarray]):
        from urep.training.multimix import MultiMixData

        seg, cls = (self.pipeline.task_data[t.name] for t in (self.seg_task, self.cls_task))
        seg_val, cls_val = seg.folds[0][1], cls.folds[0][1]
        return MultiMixData(
            seg_images=seg.pool.images[seg_rows[0]], seg_masks=seg.pool.masks[seg_rows[0]],
            seg_unlabelled=seg.pool.images[seg_rows[1]],
            cls_images=cls.pool.images[cls_rows[0]], cls_labels=cls.pool.labels[cls_rows[0]],
            cls_unlabelled=cls.pool.images[cls_rows[1]],
            val_seg_images=seg.pool.images[seg_val], val_seg_masks=seg.pool.masks[seg_val],
            val_cls_images=cls.pool.images[cls_val], val_cls_labels=cls.pool.labels[cls_val])

    def _prefix(self, setting: str, seed: int) -> str:
        """Run-directory part of one budget: `budgets/<setting>`, or `budgets/seed<k>/<setting>` with seeds."""
        return f"budgets/seed{seed}/{setting}" if self.config.multimix.seeds else f"budgets/{setting}"

    def _train_variant(self, variant: str, data, setting: str, seed: int) -> tuple[Any, Any]:
        from urep.seed import seed_everything
        from urep.training.multimix import MultiMixConfig, multimix_for_variant, train_multimix

        seed_everything(seed, self.config.deterministic)
        model = multimix_for_variant(variant, input_shape=self.pipeline.shape, n_classes=len(self.classes),
                                     name=f"multimix_{variant}", **self.model_options)
        settings = MultiMixConfig(variant=variant, seed=seed, **self.trainer_options)
        prefix = self._prefix(setting, seed)
        result = train_multimix(model, data, settings, run=self.run_dir / prefix)
        logger.info("multimix %s at %s (seed %d): best epoch %s of %d in %.1f s", variant, setting, seed,
                    result.best_epoch, result.epochs_run, result.seconds)
        self.results["models"].append({
            "id": f"{prefix}/multimix/{variant}", "role": "multimix", "method": variant, "task": None,
            "tasks": [], "fold": None, "setting": setting, "seed": seed, "seconds": result.seconds,
            "phase_seconds": result.seconds, "trainable_params": result.trainable_params,
            "total_params": result.total_params, "compute_dtype": result.compute_dtype,
            "epochs_run": result.epochs_run, "stop_reason": "max_epochs",
            "best": dict(result.best_metrics), "best_epoch": result.best_epoch, "history": result.history})
        return model, result

    # -- scoring -------------------------------------------------------------------------------------------
    def _score(self, seg_probs: dict[str, np.ndarray], cls_probs: dict[str, np.ndarray]) -> dict[str, dict]:
        """Per domain: table metrics and the per-image scores of the paired tests."""
        from urep.metrics import classification_scores, segmentation_scores

        sets = self._test_sets()
        seg_sets, cls_sets = sets[self.seg_task.name], sets[self.cls_task.name]
        out: dict[str, dict] = {}
        for domain in ("in_domain", "cross_domain"):
            metrics: dict[str, Any] = {}
            per_image: dict[str, np.ndarray] = {}
            if domain in cls_probs and domain in cls_sets:
                scores = classification_scores(cls_sets[domain].labels, cls_probs[domain], self.classes)
                metrics.update(accuracy=scores["accuracy"], balanced_accuracy=scores["balanced_accuracy"],
                               auc=scores["auc"], auc_ci_low=scores["metrics"]["auc_ci_low"],
                               auc_ci_high=scores["metrics"]["auc_ci_high"],
                               positive_fraction=scores["positive_fraction"],
                               n_classification=int(len(cls_sets[domain])),
                               **{f"f1_{c}": scores["f1_per_class"][c] for c in self.classes})
                per_image["correct"] = np.asarray(scores["correct"], dtype=bool)
                if len(self.classes) == 2:  # DeLong's test needs the labels and the positive-class scores
                    per_image["labels"] = np.asarray(cls_sets[domain].labels)
                    per_image["positive"] = np.asarray(cls_probs[domain], dtype=np.float64)[:, 1]
            if domain in seg_probs and domain in seg_sets:
                scores = segmentation_scores(seg_sets[domain].masks, seg_probs[domain])
                metrics.update(dice=scores["dice"], hausdorff=scores["avg_hausdorff"], ssim=scores["ssim"],
                               n_segmentation=int(len(seg_sets[domain])))
                per_image["dice"] = np.asarray(scores["per_image"]["dice"], dtype=np.float64)
            if metrics:
                out[domain] = {"metrics": {k: _plain(v) for k, v in metrics.items()}, "per_image": per_image}
        return out

    def _test_sets(self) -> dict[str, dict[str, TaskArrays]]:
        sets = {}
        for task in (self.seg_task, self.cls_task):
            sets[task.name] = {"in_domain": self.pipeline.task_data[task.name].test}
            if task.name in self.cross:
                sets[task.name]["cross_domain"] = self.cross[task.name]
        return sets

    def _multimix_outputs(self, model, variant: str) -> tuple[dict, dict]:
        from urep.training.multimix import VARIANTS, predict_multimix

        parts = VARIANTS[variant]
        sets = self._test_sets()
        seg = {d: predict_multimix(model, a.images)["segmentation"] for d, a in sets[self.seg_task.name].items()} \
            if parts.segmentation else {}
        cls = {d: predict_multimix(model, a.images)["classification"] for d, a in sets[self.cls_task.name].items()} \
            if parts.classification else {}
        return seg, cls

    def _urep_outputs(self, strategy: str) -> tuple[dict, dict]:
        from urep.experiments.evaluation import predict

        pipeline = self.pipeline
        outputs = []
        for task in (self.seg_task, self.cls_task):
            model = pipeline.saved_models[f"{strategy}/{task.name}"]
            outputs.append({d: predict(model, pipeline._norm(a.images)) for d, a in self._test_sets()[task.name].items()})
        return outputs[0], outputs[1]

    def _record_run(self, model: str, method: str, kind: str, setting: str, budget: tuple, scored: dict,
                    seed: int) -> None:
        entry = {"model": model, "method": method, "kind": kind, "setting": setting, "seed": seed,
                 "budget_setting": budget_setting(*budget),
                 "budget": {"segmentation": budget[0], "classification": budget[1]}}
        entry.update({domain: value["metrics"] for domain, value in scored.items()})
        self.results["multimix"]["runs"].append(entry)

    def _paired_tests(self, setting: str, scored: dict[str, dict], seed: int) -> None:
        """McNemar (per-image correctness), DeLong (AUC, binary classification) and Wilcoxon (per-image Dice)
        between every MultiMix variant and every U-Rep strategy, and between the full `multimix` and each other
        variant (the ablation: what the unlabelled data and the KL term add), per domain, on the same test
        images."""
        from urep.statistics import delong, mcnemar, wilcoxon_paired

        stats = self.config.statistics
        tests = [("mcnemar", "correct", self.cls_task.name, "per-image correctness"),
                 ("delong", "positive", self.cls_task.name, "AUC"),
                 ("wilcoxon", "dice", self.seg_task.name, "per-image Dice")]
        variants = [m for m in scored if not m.startswith("urep_")]
        strategies = [m for m in scored if m.startswith("urep_")]
        pairs = [*itertools.product(variants, strategies),
                 *(("multimix", v) for v in variants if "multimix" in variants and v != "multimix")]
        for (a, b), domain in itertools.product(pairs, ("in_domain", "cross_domain")):
            scores_a = scored[a].get(domain, {}).get("per_image", {})
            scores_b = scored[b].get(domain, {}).get("per_image", {})
            for test, key, task, on in tests:
                if test not in stats.tests or key not in scores_a or key not in scores_b:
                    continue
                if test == "mcnemar":
                    r = mcnemar(scores_a[key], scores_b[key])
                    detail = {"b": r.b, "c": r.c, "method": r.method}
                elif test == "delong":
                    if np.unique(scores_a["labels"]).size < 2:
                        continue
                    r = delong(scores_a["labels"], scores_a[key], scores_b[key])
                    detail = {"auc_a": _plain(r.auc_a), "auc_b": _plain(r.auc_b), "note": r.note}
                else:
                    r = wilcoxon_paired(scores_a[key], scores_b[key])
                    detail = {"median_difference": _plain(r.median_difference), "note": r.note}
                self.results["statistics"].append({
                    "task": f"{task} [{setting}, {domain.replace('_', '-')}]", "setting": setting,
                    "domain": domain, "seed": seed, "a": a, "b": b, "test": test, "on": on,
                    "statistic": _plain(r.statistic),
                    "p_value": _plain(r.p_value), "significant": bool(r.p_value < stats.alpha),
                    "n": int(len(scores_a[key])), "detail": detail})

    # -- whole experiment ----------------------------------------------------------------------------------
    def _record_labelled(self, seed: int, setting: str, method: str, task: TaskConfig, rows: np.ndarray,
                         images: np.ndarray, unlabelled: np.ndarray | None = None) -> None:
        """Which training rows a method was given (and a digest of their pixels), for audits and tests."""
        import hashlib

        entry = {"seed": seed, "setting": setting, "method": method, "task": task.name,
                 "rows": [int(r) for r in rows],
                 "digest": hashlib.sha1(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest()}
        if unlabelled is not None:
            entry["unlabelled_images"] = int(len(unlabelled))
        self.results["multimix"].setdefault("labelled", []).append(entry)

    def run_budget(self, budget: tuple[int | str, int | str], seed: int | None = None) -> None:
        """Every MultiMix variant (and U-Rep strategy) at one label budget and seed, scored and tested."""
        from urep.seed import seed_everything
        from urep.training.multimix import VARIANTS
        from urep.training.run import Run

        seed = self.config.seed if seed is None else seed
        seg_rows = self._budget_split(self.seg_task, budget[0], seed)
        cls_rows = self._budget_split(self.cls_task, budget[1], seed)
        setting = budget_setting(*budget)
        self.results["data"].setdefault("budgets", {})[setting] = {
            "segmentation": {"labelled": int(len(seg_rows[0])),
                             "unlabelled": 0 if budget[0] == "all" else int(len(seg_rows[1]))},
            "classification": {"labelled": int(len(cls_rows[0])),
                               "unlabelled": 0 if budget[1] == "all" else int(len(cls_rows[1]))}}
        logger.info("budget %s: %d labelled masks, %d labelled classification images", setting,
                    len(seg_rows[0]), len(cls_rows[0]))
        data = self._multimix_data(seg_rows, cls_rows)
        for task, rows, images, pool in ((self.seg_task, seg_rows[0], data.seg_images, data.seg_unlabelled),
                                         (self.cls_task, cls_rows[0], data.cls_images, data.cls_unlabelled)):
            self._record_labelled(seed, setting, "multimix", task, rows, images, pool)
        scored: dict[str, dict] = {}
        for variant in self.config.multimix.variants:
            parts = VARIANTS[variant]
            variant_setting = budget_setting(budget[0] if parts.segmentation else None,
                                             budget[1] if parts.classification else None)
            if (variant, variant_setting, seed) in self.trained:
                # a single-task variant whose own budget was already trained: same model, scored once
                scored[variant] = self.trained[(variant, variant_setting, seed)]
                continue
            model, _ = self._train_variant(variant, data, setting, seed)
            seg, cls = self._multimix_outputs(model, variant)
            scored[variant] = self.trained[(variant, variant_setting, seed)] = self._score(seg, cls)
            self._record_run(PAPER_MODEL_NAMES.get(variant, variant), variant, "multimix", variant_setting, budget,
                             scored[variant], seed)
        if self.with_urep:
            pipeline = self.pipeline
            for task, rows in ((self.seg_task, seg_rows), (self.cls_task, cls_rows)):
                folds = pipeline.task_data[task.name].folds
                folds[0] = (rows[0], folds[0][1])
            prefix = self._prefix(setting, seed)
            pipeline.manager = Run(self.run_dir / prefix, resume=True)
            experiment_config = pipeline.config
            pipeline.config = dataclasses.replace(experiment_config, seed=seed)  # head data order
            try:
                for strategy in self.config.strategies:
                    seed_everything(seed, self.config.deterministic)
                    first = len(pipeline.results["models"])
                    pipeline.run_strategy(strategy)
                    for entry in pipeline.results["models"][first:]:
                        entry.update(id=f"{prefix}/{entry['id']}", setting=setting, seed=seed)
                    seg, cls = self._urep_outputs(strategy)
                    name = f"urep_{strategy}"
                    scored[name] = self._score(seg, cls)
                    self._record_run(name, strategy, "urep", setting, budget, scored[name], seed)
            finally:
                pipeline.config = experiment_config
            for task in (self.seg_task, self.cls_task):
                data_of = pipeline.task_data[task.name]
                rows = data_of.folds[0][0]
                self._record_labelled(seed, setting, "urep", task, rows, data_of.pool.images[rows])
            pipeline.outputs = {}
        if self.config.references.enabled and seed == self.seeds[0]:  # once per budget, not per seed
            from urep.experiments.references import multimix_references

            multimix_references(self, seg_rows[0], cls_rows[0], budget)
        self._paired_tests(setting, scored, seed)

    def run(self) -> dict:
        """Load data, train U-Rep's source (comparison only), then every budget; returns the results."""
        started = time.perf_counter()
        self.load_data()
        if self.with_urep:
            logger.info("training the U-Rep source representation (%s)", self.config.source.kind)
            self.pipeline.train_source()
            self.results["source"] = self.pipeline.results.get("source")
            self.results["denoising"] = self.pipeline.results.get("denoising", [])
        for seed in self.seeds:
            for budget in _budgets(self.config):
                self.run_budget(budget, seed)
        if self.config.multimix.seeds:
            self.results["multimix"]["summary"] = seed_summary(self.results["multimix"]["runs"],
                                                               self.results["statistics"])
        if self.with_urep:
            self.results["models"] = self.pipeline.results["models"] + self.results["models"]
            self.pipeline.save_models(None)
        self.results["experiment_seconds"] = time.perf_counter() - started
        return self.results


SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "auc", "positive_fraction", "dice", "hausdorff", "ssim")


def seed_summary(runs: list[dict], statistics: list[dict]) -> list[dict]:
    """Mean and spread over seeds of every model x budget x domain metric, with the per-seed paired tests.

    Args:
        runs: `results["multimix"]["runs"]` (entries with `seed`).
        statistics: `results["statistics"]` (paired tests with `seed`).

    Returns:
        One entry per (model, setting, domain): `model`, `kind`, `method`, `setting`, `domain`, `seeds`, and per
        metric `{"mean", "std" (sample, ddof 1; 0 with one seed), "min", "max", "values"}` (NaN values left out),
        plus `tests`: `{test: {"p_values": [per seed], "significant": k, "n_seeds": n}}` against each MultiMix
        variant (keyed `"<test> vs <variant>"`) for U-Rep rows, and against the full `multimix` for the rows of
        the other MultiMix variants (the ablation).
    """
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        for domain in ("in_domain", "cross_domain"):
            if run.get(domain):
                groups.setdefault((run["model"], run["setting"], domain), []).append(run)
    summary = []
    for (model, setting, domain), members in groups.items():
        entry: dict[str, Any] = {"model": model, "kind": members[0].get("kind"), "method": members[0].get("method"),
                                 "setting": setting, "domain": domain, "seeds": [m.get("seed") for m in members]}
        for metric in SUMMARY_METRICS:
            values = [m[domain].get(metric) for m in members]
            values = [float(v) for v in values if v is not None and not np.isnan(v)]
            if values:
                entry[metric] = {"mean": float(np.mean(values)),
                                 "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                                 "min": float(np.min(values)), "max": float(np.max(values)), "values": values}
        tests: dict[str, dict] = {}
        against = f"urep_{entry['method']}" if entry["kind"] == "urep" else entry["method"]
        for t in statistics:
            if t.get("b") == against and t.get("domain") == domain and \
                    t.get("setting") == members[0].get("budget_setting") and \
                    (entry["kind"] == "urep" or t.get("a") == "multimix"):
                key = f"{t['test']} vs {t['a']}"
                item = tests.setdefault(key, {"p_values": [], "seeds": [], "significant": 0})
                item["p_values"].append(t["p_value"])
                item["seeds"].append(t.get("seed"))
                item["significant"] += int(bool(t.get("significant")))
        for item in tests.values():
            item["n_seeds"] = len(item["p_values"])
        entry["tests"] = tests
        summary.append(entry)
    return summary


def _plain(value: Any) -> Any:
    """NumPy scalars -> Python; NaN -> None (JSON)."""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if np.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def run_multimix_experiment(config: ExperimentConfig, run_dir: str | Path, data_root: str | None = None,
                            resume: bool = False) -> dict:
    """Run a `multimix` or `urep_vs_multimix` config inside the prepared `run_dir` (see the module docstring).

    Returns:
        The results dict (without environment and timing, which the runner adds).

    Raises:
        ValueError: a budget larger than a task's training set, unknown `multimix.options`, or tasks that are
            not one segmentation and one classification task.
    """
    return MultiMixExperiment(config, Path(run_dir), data_root, resume=resume).run()
