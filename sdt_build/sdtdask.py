"""SDTDask: the Python entry, ``SDTDask(folder).execute(keys)``; a thin shell like the CLI.

It composes the stages: the image the client runs (built and smoke-tested when the client needs
one and names none; skipped when unchanged), the client's cluster, the run, and closing what was
started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from sdt_build.build.daemon import docker_client
from sdt_build.build.image import untag_pushed
from sdt_build.clients import Client, load_client
from sdt_build.interrupt import terminate_as_interrupt
from sdt_build.pipeline import build_project
from sdt_build.run.results import OutputFolder
from sdt_build.run.runner import RunOptions, RunResult, run
from sdt_build.runtime.errors import ProjectError, RunFailure
from sdt_build.runtime.keys import read_keys_file, validate_key
from sdt_build.runtime.rows import Row
from sdt_build.userfolder.project import load_project, runtime_env
from sdt_build.userfolder.settings import pipeline_problems


class SDTDask:
    """``client`` overrides the one in client.py; ``image`` is the tag the scheduler and workers run
    (None: the client's own, or the local Python)."""

    def __init__(self, path: str | Path, *, client: Client | None = None, image: str | None = None):
        self.project = load_project(path)
        # the declared variables that are set here: containers and cloud workers get them at run time
        self.client = (client or load_client(self.project)).with_environment(
            runtime_env(self.project), {v.name for v in self.project.env if v.secret})
        self.image = image or self.client.image

    def execute(self, keys: Iterable[Any] | str | os.PathLike | None = None, output_dir: str | Path | None = None,
                resume: bool = False, *, force: bool = False, loss_analysis: bool = False,
                timeout: float | None = None, retries: int = 1, max_in_flight: int | None = None,
                check_versions: bool = True, lost_cluster_timeout: float = 60, progress: bool = False, dask_client=None,
                on_row: Callable[[Row], None] | None = None, plots: int = 3, plot_keys: Iterable[Any] = (),
                on_start: Callable[[dict], None] | None = None, upstream_fixes: bool | None = None,
                worker_profile: bool = False, **run_pipeline_kwargs: Any) -> RunResult:
        """Run every key. Keyword arguments not named here go to ``DataHandler.run_pipeline``.

        An ``output_dir`` that holds finished rows is refused unless ``resume`` (run only the keys
        without an ok row) or ``force`` (discard them); one that another project's runs wrote is
        refused unless ``force``. Nothing in it changes until the run has started.

        ``keys`` is a list of keys, or the path of a keys file (str or Path), read as ``run --keys``
        reads it (a JSON list keeps JSON's types; a CSV file's fields are text as written); None: the
        keys of sdt.toml, else the plug's ``keys()``.

        ``upstream_fixes`` (default: sdt.toml's ``upstream_fixes``, on unless set false) applies
        ``sdt_build.runtime.upstream_fixes`` on every worker; the run record says what each did.
        ``worker_profile`` turns Dask's profiler on the workers on (off by default: it costs ~10 % of a
        site's time and holds an hour of samples) for the profile in dask-report.html.

        The first ``plots`` keys run, and ``plot_keys``, keep SDT's own figures for the report
        (report.html in ``output_dir``). A ``dask_client`` you pass is used and left open; otherwise
        the client from client.py is connected and closed at the end. SIGTERM is handled like Ctrl-C
        while this runs.
        """
        wrong = pipeline_problems(run_pipeline_kwargs, self.project.settings.python)
        if wrong:
            raise ProjectError("SDT-E129", *wrong[0])
        options = RunOptions({"verbose": False, **self.project.settings.run_pipeline, **run_pipeline_kwargs},
                             loss_analysis, timeout, retries, max_in_flight, check_versions, lost_cluster_timeout,
                             plots, tuple(validate_key(k) for k in plot_keys),
                             self.project.settings.upstream_fixes if upstream_fixes is None else upstream_fixes,
                             worker_profile)
        if isinstance(keys, (str, os.PathLike)):
            keys = read_keys_file(keys)
        keys = None if keys is None else [validate_key(k) for k in keys]
        output = OutputFolder(Path(output_dir) if output_dir else None, resume and output_dir is not None,
                              project=self.project.name, force=force)
        owns = dask_client is None
        try:
            with terminate_as_interrupt():
                if owns and self.client.needs_image and not self.image:
                    self.image = self._built_image()
                try:  # a cluster that fails to start is released too
                    if owns:
                        dask_client = self.client.connect(self.image)
                    return run(self.project, dask_client, keys, options, output, progress=progress, on_row=on_row,
                               client_settings={**self.client.describe(), "image": self.image},
                               explain=self.client.explain_lost_worker if owns else None, on_start=on_start)
                finally:
                    if owns:
                        self.client.close()
        finally:
            output.close()

    def _built_image(self) -> str:
        """Build and smoke-test the image; for a client whose cluster pulls from a registry, push it
        (content tag and :latest) and drop this machine's registry tags, so the cluster pulls it."""
        registry = self.client.registry or self.project.settings.registry
        if not self.client.needs_registry:
            return build_project(self.project.root).image.tag
        if not registry:
            raise RunFailure("SDT-E521", f"{type(self.client).__name__} runs an image from a registry, and neither "
                             "client.py nor sdt.toml names one", 'set registry = "HOST[/PATH]" in client.py or '
                             "sdt.toml (or image = a pushed image)")
        self.client.preflight(registry)
        pushed = build_project(self.project.root, push=registry).image.pushed
        untag_pushed(docker_client(), pushed)
        return pushed
