"""The notebooks in notebooks/ execute top to bottom (small settings) and are committed without outputs.

Each notebook reads ``JSNN_NOTEBOOK_SMOKE=1`` (tiny training runs, few images, few samples) and
``JSNN_NOTEBOOK_WORKDIR`` (where its runs go); here they run with nbclient on the ``python3``
kernel (jupyter_client starts it with this interpreter), in a temporary working directory.
A cell that raises fails the test with the cell's traceback.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("quickstart.ipynb", "defenses.ipynb", "certify.ipynb")
# Figures each notebook must draw in smoke mode (matplotlib inline PNGs).
MIN_FIGURES = {"quickstart.ipynb": 4, "defenses.ipynb": 3, "certify.ipynb": 2}
CELL_TIMEOUT_S = 600


def _read(name):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_has_parameters_cell_and_smoke_switch(name):
    nb = _read(name)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assert "JSNN_NOTEBOOK_SMOKE" in tagged[0].source
    assert "JSNN_NOTEBOOK_WORKDIR" in tagged[0].source
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executes_in_smoke_mode(name, tmp_path):
    nb = _read(name)
    env = dict(os.environ, JSNN_NOTEBOOK_SMOKE="1", JSNN_NOTEBOOK_WORKDIR=str(tmp_path / "runs"),
               MPLBACKEND="module://matplotlib_inline.backend_inline", TQDM_MININTERVAL="1")
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # raises CellExecutionError with the failing cell's traceback

    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.outputs)
    assert figures >= MIN_FIGURES[name], f"{name}: drew {figures} figures, expected >= {MIN_FIGURES[name]}"
    assert (tmp_path / "runs").is_dir(), f"{name}: wrote nothing under JSNN_NOTEBOOK_WORKDIR"
