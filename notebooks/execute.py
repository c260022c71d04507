"""Execute walkthrough notebooks in place at their committed parameters, with outputs that do not churn.

    python notebooks/execute.py notebooks/01_quickstart.ipynb [more.ipynb ...]

Each notebook runs with nbclient on the `python3` kernel in a temporary working directory (its relative
`OUT_DIR` lands there, nothing is written next to the notebooks). Before saving, outputs that would change
from run to run or machine to machine are removed: nbclient's per-cell timestamps, stderr streams (TensorFlow
and Keras logs, progress bars) and the temporary folder's path (written as `.`). Seeds are fixed by each
notebook's `SEED` parameter.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

CELL_TIMEOUT_S = 3600


def clean(nb, workdir: str) -> None:
    """Drop timestamps and stderr, and write the working directory's path as `.`, in place."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                continue
            if "text" in output:
                output["text"] = output["text"].replace(workdir + "/", "").replace(workdir, ".")
            for key, value in output.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    output["data"][key] = value.replace(workdir + "/", "").replace(workdir, ".")
            kept.append(output)
        cell.outputs = kept


def execute(path: Path) -> None:
    """Run `path` top to bottom and overwrite it with its cleaned outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="urep-nb-") as workdir:
        workdir = os.path.realpath(workdir)
        NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, allow_errors=False,
                       resources={"metadata": {"path": workdir}}).execute()
        clean(nb, workdir)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        execute(Path(name))
        print(f"executed {name}")
