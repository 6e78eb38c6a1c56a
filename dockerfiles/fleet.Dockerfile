# Rendered by sdt-build from templates/Dockerfile.j2 for project "fleet" (Python 3.11).
# It starts FROM the SDT environment image (SDT_ENV_IMAGE: a venv with SDT's pinned set, built
# once per constraint set and base from templates/sdt-env.sh.j2 and shared by every plug). Build
# context (written by `sdt-build build --context-only`): wheels/plug (the plug's locked wheels,
# downloaded on the host), lock/plug.txt, tools/uv (which installs them), runtime/ (the sdt_build
# package), project/ (the user's folder); env/ holds the environment image's own inputs. Nothing
# is fetched during the build.
ARG SDT_ENV_IMAGE

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
LABEL org.opencontainers.image.title="fleet" \
      io.sdt-build.python="3.11" \
      io.sdt-build.sdt-version="2.1.5" \
      io.sdt-build.plug="FleetPV" \
      io.sdt-build.client="Fleet"
WORKDIR /opt/sdt/project
USER sdt
CMD ["python3", "-c", "import sdt_build, solardatatools, dask, distributed; print('sdt-build image ready')"]
COPY runtime/ /opt/sdt/lib/
COPY project/ /opt/sdt/project/
