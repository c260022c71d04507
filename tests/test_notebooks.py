"""Walkthrough notebooks (`notebooks/NN_*.ipynb`): stored outputs that do not churn; each runs at a tiny size.

Each notebook has one cell tagged `parameters` (the papermill convention) holding plain `NAME = value`
assignments. The execution test rewrites the values named in `TINY` / `TINY_PER_NOTEBOOK` in that cell (every
name must exist there, so a renamed parameter fails here instead of silently running at full size), points
`OUT_DIR` into pytest's `tmp_path`, runs the notebook with nbclient on the `python3` kernel (working
directory `tmp_path`), and checks that no cell failed, that figures were drawn inline, and that nothing was
written next to the notebooks.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = (
    "01_quickstart",
    "02_urep1_denoising",
    "03_heads_and_strategies",
    "04_doppler_urep2",
    "05_explanations",
    "06_hyperparameter_search",
    "07_multimix_vs_urep",
)

#: Parameters every notebook defines, at their tiny values (OUT_DIR is added per test).
TINY = {"DATA_ROOT": None, "IMAGE_SIZE": 32, "EPOCHS": 1, "SEED": 0}
#: Further tiny values, per notebook (each name must be defined in that notebook's parameters cell).
TINY_PER_NOTEBOOK: dict[str, dict] = {
    "01_quickstart": {"N_PATIENTS": 12},
    "02_urep1_denoising": {"N_PATIENTS": 12},
    "03_heads_and_strategies": {"N_PATIENTS": 12},
    "04_doppler_urep2": {"N_PATIENTS": 6},
    "05_explanations": {"N_PATIENTS": 12},
    "06_hyperparameter_search": {"N_PATIENTS": 8, "MAX_TRIALS": 2},
    "07_multimix_vs_urep": {"N_PATIENTS": 12, "SEG_LABELS": 4, "CLS_LABELS": 8},
}
CELL_TIMEOUT_S = 180


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _parameters_cell(nb, name: str):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    assert cells[0].cell_type == "code", f"{name}: the 'parameters' cell must be a code cell"
    return cells[0]


def _assignments(source: str) -> dict[str, object]:
    """`NAME -> value` of a parameters cell (literal values only)."""
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"parameters cell must hold only `NAME = literal` lines, got: {ast.unparse(node)}"
        )
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def inject_parameters(source: str, overrides: dict[str, object]) -> str:
    """`source` with the listed `NAME = value` lines replaced; raises `KeyError` naming an unknown name."""
    defined = _assignments(source)
    unknown = sorted(set(overrides) - set(defined))
    if unknown:
        raise KeyError(f"parameters {unknown} are not defined in the parameters cell (it has {sorted(defined)})")
    lines = []
    for line in source.splitlines():
        name = line.split("=", 1)[0].strip()
        lines.append(f"{name} = {overrides[name]!r}" if "=" in line and name in overrides else line)
    return "\n".join(lines)


def _files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


# -- static checks (no kernel) ---------------------------------------------------------------------------------

#: Text in stored outputs that would differ between machines or runs (absolute paths).
CHURN = re.compile(r"(/tmp/|/home/|/work/|/Users/)")
#: Run-to-run noise: clock times and dates, terminal colour codes, carriage returns (progress bars), object
#: addresses and log lines (in Jupyter TensorFlow logs to stdout, which `execute.py` keeps).
NOISE = re.compile(r"(\b\d{1,2}:\d{2}:\d{2}\b|\b20\d\d-\d\d-\d\d\b|\x1b\[|\r| at 0x[0-9a-f]+|WARNING:)")


def _check_stored_outputs(name: str, code) -> None:
    """Committed outputs (`notebooks/execute.py`) must come from one top-to-bottom run and not churn: no
    timestamps, no stderr logs, no errors, no absolute paths, no clock times or dates, no terminal codes or
    progress bars. A notebook may also be committed clean."""
    counts = [c.execution_count for c in code]
    if all(n is None for n in counts) and not any(c.outputs for c in code):
        return
    assert counts == list(range(1, len(code) + 1)), f"{name}: not executed top to bottom once: {counts}"
    for i, cell in enumerate(code):
        assert "execution" not in cell.metadata, f"{name}: code cell {i} stores execution timestamps"
        for output in cell.outputs:
            assert output.get("output_type") != "error", f"{name}: code cell {i} stores an error"
            assert output.get("name") != "stderr", f"{name}: code cell {i} stores stderr (logs churn)"
            text = output.get("text", "") + "".join(
                v for k, v in output.get("data", {}).items() if k.startswith("text/") and isinstance(v, str))
            assert not CHURN.search(text), f"{name}: code cell {i} stores an absolute path: {CHURN.search(text)[0]}"
            assert not NOISE.search(text), f"{name}: code cell {i} stores run-to-run noise: {NOISE.search(text)[0]!r}"


def test_every_walkthrough_is_there():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parametrised(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    _check_stored_outputs(path.name, code)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
        f"{path.name} must open with a markdown title"
    )
    params = _assignments(_parameters_cell(nb, path.name).source)
    for name in (*TINY, "OUT_DIR", *TINY_PER_NOTEBOOK[path.stem]):
        assert name in params, f"{path.name}: parameter {name} missing from the parameters cell"
    assert params["DATA_ROOT"] is None, f"{path.name}: DATA_ROOT must default to None (the phantoms)"
    assert not Path(params["OUT_DIR"]).is_absolute(), f"{path.name}: OUT_DIR must be relative"


def test_inject_parameters_replaces_values_and_rejects_unknown_names():
    source = 'DATA_ROOT = None  # real data\nIMAGE_SIZE = 64\nOUT_DIR = "runs/x"'
    injected = inject_parameters(source, {"IMAGE_SIZE": 32, "OUT_DIR": "/tmp/o"})
    assert _assignments(injected) == {"DATA_ROOT": None, "IMAGE_SIZE": 32, "OUT_DIR": "/tmp/o"}
    with pytest.raises(KeyError, match="EPOCHS"):
        inject_parameters(source, {"EPOCHS": 1})


# -- execution ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_name() -> str:
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import find_kernel_specs

    specs = find_kernel_specs()
    assert "python3" in specs, f"no 'python3' Jupyter kernel spec found (have {sorted(specs)}); install ipykernel"
    return "python3"


def execute(path: Path, workdir: Path, overrides: dict[str, object], kernel: str):
    from nbclient import NotebookClient

    nb = _read(path)
    cell = _parameters_cell(nb, path.name)
    cell.source = inject_parameters(cell.source, overrides)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    client = NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_tiny(path, tmp_path, kernel_name):
    before = _files_under(NOTEBOOK_DIR)
    out_dir = tmp_path / "out"
    overrides = {**TINY, **TINY_PER_NOTEBOOK[path.stem], "OUT_DIR": str(out_dir)}
    nb = execute(path, tmp_path, overrides, kernel_name)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no inline figure"
    assert out_dir.is_dir(), f"{path.name} wrote nothing under OUT_DIR"
    written = sorted(str(p.relative_to(REPO)) for p in _files_under(NOTEBOOK_DIR) - before)
    assert not written, f"{path.name} wrote into the repository: {written}"


def test_quickstart_runs_on_real_images(tmp_path, kernel_name, shared_data):
    """Switching to real data is one variable: the quickstart on the Shenzhen subset."""
    root = shared_data / "shenzhen"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    path = NOTEBOOK_DIR / "01_quickstart.ipynb"
    overrides = {**TINY, "DATA_ROOT": str(root), "OUT_DIR": str(tmp_path / "out")}
    nb = execute(path, tmp_path, overrides, kernel_name)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"150 images from {root}" in printed
