"""The notebooks under notebooks/: committed without outputs, and each runs top to bottom.

Execution uses a kernel of the interpreter running the tests (its environment, with this
checkout first on the path), so a notebook imports the same ddlsim the tests do.
Deselect with ``-m "not notebooks"``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 240

pytestmark = pytest.mark.notebooks


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def test_the_notebooks_are_there():
    assert {path.stem for path in NOTEBOOKS} >= {"stragglers", "scaling", "what_if_hardware"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path: Path):
    # Outputs in the repository go stale with every model change and bloat the diffs.
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {index} has outputs"
        assert cell.get("execution_count") is None, \
            f"{path.name} cell {index} has an execution count"


def _kernel_manager(kernel_dir: Path):
    """A kernel manager whose python3 kernel is this interpreter, whatever kernels the
    machine has installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = kernel_dir / "python3"
    spec_dir.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ddlsim tests)",
        "language": "python",
        "env": {"PYTHONPATH": path, "MPLBACKEND": "Agg",
                # ipykernel's debugger warns about frozen modules on every start.
                "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path: Path, tmp_path: Path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, km=_kernel_manager(tmp_path / "kernels"), timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(ROOT)}}, allow_errors=False)
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
