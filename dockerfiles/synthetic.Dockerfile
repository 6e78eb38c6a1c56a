# Rendered by sdt-build from templates/Dockerfile.j2 for project "synthetic" (Python 3.11).
# Build context (written by `sdt-build build --context-only`): wheels/sdt, wheels/plug (every locked
# wheel, downloaded on the host), lock/sdt.txt, lock/plug.txt, runtime/ (the sdt_build package),
# project/ (the user's folder). Nothing is fetched during the build: pip installs with --no-index.
ARG BASE_IMAGE=python:3.11-slim

# --- SDT layer: identical for every plug with the same constraints and base -------------------
# Packages' own test suites and C/Cython sources are left out: nothing imports them at run time.
FROM ${BASE_IMAGE} AS sdt-builder
COPY lock/sdt.txt /tmp/lock/sdt.txt
COPY wheels/sdt/ /tmp/wheels/
RUN python3 -m venv /opt/sdt/venv \
 && /opt/sdt/venv/bin/pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels --requirement /tmp/lock/sdt.txt \
 && find /opt/sdt/venv \( -name '__pycache__' -o -path '*/site-packages/*/tests' \) -type d -prune \
        -exec rm -rf {} + \
 && find /opt/sdt/venv/lib \( -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.cpp' \) -delete
# The launchers Dask's cluster engines call (dask-cloudprovider's ECS/Fargate task definitions,
# dask-kubernetes' pod specs): distributed 2026.6 dropped these console scripts, its modules remain.
RUN for role in scheduler worker; do \
      printf '#!/bin/sh\nexec python3 -m distributed.cli.dask_%s "$@"\n' "$role" > /opt/sdt/venv/bin/dask-$role \
      && chmod 755 /opt/sdt/venv/bin/dask-$role; \
    done

FROM ${BASE_IMAGE} AS sdt-runtime
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin sdt
COPY --from=sdt-builder /opt/sdt/venv /opt/sdt/venv
ENV PATH=/opt/sdt/plug/bin:/opt/sdt/venv/bin:$PATH \
    PYTHONPATH=/opt/sdt/plug:/opt/sdt/lib:/opt/sdt/project \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

# --- the plug's own packages (those it adds, and SDT pins it moves), then pip check -----------
FROM sdt-runtime AS plug-builder
COPY lock/plug.txt /tmp/lock/plug.txt
COPY wheels/plug/ /tmp/wheels/
RUN mkdir -p /opt/sdt/plug \
 && pip check --disable-pip-version-check

# --- the image the scheduler and every worker run ---------------------------------------------
FROM sdt-runtime
COPY --from=plug-builder /opt/sdt/plug /opt/sdt/plug
COPY runtime/ /opt/sdt/lib/
COPY project/ /opt/sdt/project/
LABEL org.opencontainers.image.title="synthetic" \
      io.sdt-build.python="3.11" \
      io.sdt-build.sdt-version="2.1.5" \
      io.sdt-build.plug="SyntheticPV" \
      io.sdt-build.client="Laptop"
USER sdt
WORKDIR /opt/sdt/project
CMD ["python3", "-c", "import sdt_build, solardatatools, dask, distributed; print('sdt-build image ready')"]
