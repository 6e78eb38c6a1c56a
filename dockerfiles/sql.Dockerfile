# Rendered by sdt-build from templates/Dockerfile.j2 for project "sql-sites" (Python 3.11).
# It starts FROM the SDT environment image (SDT_ENV_IMAGE: a venv with SDT's pinned set, built
# once per constraint set and base from templates/sdt-env.sh.j2 and shared by every plug). Build
# context (written by `sdt-build build --context-only`): wheels/plug (the plug's locked wheels,
# downloaded on the host), lock/plug.txt, tools/uv (which installs them), runtime/ (the sdt_build
# package), project/ (the user's folder); env/ holds the environment image's own inputs. Nothing
# is fetched during the build.
ARG SDT_ENV_IMAGE

# --- the plug's own packages (those it adds, and SDT pins it moves); the smoke test's pip check
# runs over the finished image -------------------------------------------------------------------
FROM ${SDT_ENV_IMAGE} AS plug-builder
ENV PATH=/opt/sdt/plug/bin:/opt/sdt/venv/bin:$PATH \
    PYTHONPATH=/opt/sdt/plug:/opt/sdt/lib:/opt/sdt/project \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1
COPY tools/uv /tmp/uv
COPY lock/plug.txt /tmp/lock/plug.txt
COPY wheels/plug/ /tmp/wheels/
RUN /tmp/uv pip install --python /opt/sdt/venv/bin/python --offline --no-index --no-cache --no-deps \
        --link-mode copy --target /opt/sdt/plug --find-links /tmp/wheels --requirement /tmp/lock/plug.txt \
 && find /opt/sdt/plug \( -name '__pycache__' -o -path '/opt/sdt/plug/*/tests' \) -type d -prune \
        -exec rm -rf {} +

# --- the image the scheduler and every worker run. What an edit leaves alone comes first, so the
# builder reuses it; then the project's layer, and one LABEL with what names this build.
FROM ${SDT_ENV_IMAGE}
ENV PATH=/opt/sdt/plug/bin:/opt/sdt/venv/bin:$PATH \
    PYTHONPATH=/opt/sdt/plug:/opt/sdt/lib:/opt/sdt/project \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1
LABEL org.opencontainers.image.title="sql-sites" \
      io.sdt-build.python="3.11" \
      io.sdt-build.sdt-version="2.1.5" \
      io.sdt-build.plug="PostgresSites" \
      io.sdt-build.client="Laptop"
WORKDIR /opt/sdt/project
USER sdt
CMD ["python3", "-c", "import sdt_build, solardatatools, dask, distributed; print('sdt-build image ready')"]
COPY --from=plug-builder /opt/sdt/plug /opt/sdt/plug
COPY runtime/ /opt/sdt/lib/
COPY project/ /opt/sdt/project/
