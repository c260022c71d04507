"""Derivable tasks (the papers' "derivable tasks" V_1..V_D): visual explanation and Doppler recommendation.

`gradcam` (Grad-CAM / Grad-CAM++ / Score-CAM through tf-keras-vis, on the encoder layer found by name),
overlays and energy-inside-mask quantification; `recommend` merges the flow-type and quality heads with a
rule table; `load_run_models` reads a run directory's trained task models for the CLI.
"""

from urep.explain.gradcam import (
    energy_by_class,
    energy_inside,
    flatten_model,
    gradcam,
    overlay,
    predict_probabilities,
    save_overlay,
)
from urep.explain.recommendation import (
    DEFAULT_RULES,
    RecommendationRule,
    RecommendationRules,
    recommend,
)
from urep.explain.run_models import RunLayoutError, RunModels, TaskEntry, load_run_models, save_run_models

__all__ = [
    "DEFAULT_RULES",
    "RecommendationRule",
    "RecommendationRules",
    "RunLayoutError",
    "RunModels",
    "TaskEntry",
    "energy_by_class",
    "energy_inside",
    "flatten_model",
    "gradcam",
    "load_run_models",
    "overlay",
    "predict_probabilities",
    "recommend",
    "save_overlay",
    "save_run_models",
]
