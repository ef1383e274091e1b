"""Calibration: measure a GPU with real CUDA kernels and fit the compute-model constants.

* ``kernels.cu``: the kernels (STREAM copy and triad, empty and chained launches, a
  32x32-tiled SGEMM, fused SGD with momentum), compiled at run time by CuPy (NVRTC).
* ``harness.py``: runs them and cuBLAS (via ``cupy.matmul``) over size sweeps, checking
  each result against numpy before timing it. Needs CuPy and a GPU.
* ``fit.py``: pure fits of the measurement records into the ``constants`` of
  ``data/calibration/<gpu-id>.json`` (schema: ``SCHEMA_VERSION``), and the schema check.
* ``calibrate.py``: device name to catalog id, the run, the atomic write.

On a machine with an NVIDIA GPU::

    pip install -e '.[gpu]'
    ddlsim calibrate            # full sweep, writes data/calibration/<gpu-id>.json
    ddlsim calibrate --quick --gpu-id h200-sxm --out /tmp/h200.json
    python -m pytest -m gpu     # the harness's correctness checks on the device
"""
