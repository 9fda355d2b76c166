# The analyzer's own image: analyzer-widgets with JupyterLab, the embedded Triton server
# (from the nvidia-pytriton wheel) and the example notebooks.
#
#   docker build -t analyzer-widgets .
#   docker run --rm -p 127.0.0.1:8888:8888 analyzer-widgets          # JupyterLab; token in the log
#   docker run --rm analyzer-widgets analyzer-widgets demo            # the demo sweep, in the terminal
#
# BASE must be Debian/Ubuntu-like with python3 (3.10-3.13) built with a shared libpython,
# the venv module, and useradd: python:3.11-slim-bookworm (the default) is; offline, so is
# the local base that scripts/build-analyzer-base-image.sh makes without a registry:
#   docker build --build-arg BASE=analyzer-widgets/base-py311:bookworm -t analyzer-widgets .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Always a venv: on Debian's python3 pip refuses the system site-packages (PEP 668), and on
# python:3.11-slim it costs nothing. First on PATH, so `python`, `pip`, `jupyter` and
# `analyzer-widgets` are the venv's (the embedded Triton's stub uses this interpreter and
# finds its shared libpython through sysconfig's LIBDIR).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

# Only what the wheel build needs, so editing notebooks or tests keeps this layer cached.
COPY pyproject.toml README.md /src/
COPY analyzer_widgets /src/analyzer_widgets
# Behind a TLS-intercepting proxy, give pip the proxy's CA (PEM text; CA certificates are
# public, but note that the value shows in `docker history`):
#   docker build --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)" ...
# It is added to pip's own bundle for this step only and is not left in the image.
ARG EXTRA_CA_CERTS=""
# The package's extras: `lab` (JupyterLab); add `ray` for the nodes of a Ray cluster and the
# Helm chart's Ray mode: docker build --build-arg EXTRAS=lab,ray ...
ARG EXTRAS=lab
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        { cat "$(python -m pip._vendor.certifi)"; printf '%s\n' "$EXTRA_CA_CERTS"; } >/tmp/pip-ca.pem \
     && export PIP_CERT=/tmp/pip-ca.pem; \
    fi \
 && pip install --no-cache-dir "/src[${EXTRAS}]" \
 && rm -rf /src /tmp/pip-ca.pem
# the analyzer's own check that the embedded Triton's Python stub finds a shared libpython
RUN python -c "import sys; from pathlib import Path; \
from analyzer_widgets.server._embedded import shared_libpython_dir as d; print('shared libpython in', d(Path(sys.executable)))"

# Not root: a plain user owns its home and the notebooks.
RUN useradd --create-home --uid 1000 --shell /bin/bash analyzer
COPY --chown=analyzer:analyzer notebooks /home/analyzer/notebooks
USER analyzer
WORKDIR /home/analyzer/notebooks

EXPOSE 8888
# Token auth stays on: the URL with the token is printed in the log (`docker logs`).
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/analyzer/notebooks"]
