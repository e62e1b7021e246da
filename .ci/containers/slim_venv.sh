#!/bin/sh
# Removes from a virtual environment what a component never runs, in the images' builder stage. Each item is
# measured on the CPU image (kfp-ct 0.1.0): about 200 MB in all, which brings it under 1.2 GB.
#   - the test suites that these libraries ship inside their wheels (pandas, scipy, statsmodels, numpy,
#     scikit-learn, pyarrow, matplotlib, psutil): ~140 MB. Only these: evidently/tests, for one, is runtime code.
#   - C and Cython headers and sources (*.h, *.pxd, *.pyx, ...): only a compiler uses them, and the images have none
#     (except under torch, triton, tensorflow and nvidia, which compile at run time where a compiler is added).
#   - MLflow's web UI (mlflow/server/js): the components use MLflow's client; no image runs `mlflow server`. ~27 MB
#   - plotly's JupyterLab extension (jupyterlab_plotly, share/jupyter): no Jupyter in the images. ~19 MB
# usage: slim_venv.sh VENV
set -eu
venv="$1"
site="$(echo "$venv"/lib/python3*/site-packages)"
[ -d "$site" ] || { echo "slim_venv.sh: no site-packages under $venv" >&2; exit 1; }
before="$(du -sm "$venv" | cut -f1)"
for package in pandas scipy statsmodels numpy sklearn pyarrow matplotlib psutil; do
    [ -d "$site/$package" ] && find "$site/$package" -depth -type d -name tests -exec rm -rf {} +
done
# torch, triton, TensorFlow and the nvidia-* packages compile kernels and extensions at run time from their headers.
find "$site" \( -path "$site/torch" -o -path "$site/triton" -o -path "$site/tensorflow" -o -path "$site/nvidia" \) -prune \
    -o -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' \
    -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \) -exec rm -f {} +
rm -rf "$site/pyarrow/include" "$site/pyarrow/src" "$site/mlflow/server/js" "$site/jupyterlab_plotly" \
       "$venv/share/jupyter" "$venv/share/man"
find "$site" -depth -type d -empty -delete
echo "slim_venv.sh: $venv ${before} MB -> $(du -sm "$venv" | cut -f1) MB"
