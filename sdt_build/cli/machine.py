"""`base`, `clean` and `doctor`: this machine's base images, what sdt-build left on it, and its check."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from sdt_build.cli.shell import Output, command, main, out


@command(main, "clean")
@click.option("--images", is_flag=True, help="Also remove every image sdt-build built (and its bytecode volumes).")
@click.option("--cache", is_flag=True, help="Also empty sdt-build's cache (wheels, locks, contexts, logs).")
@click.option("--unowned", is_flag=True, help="Also remove sdt-build containers that name no owner (made by "
              "versions before owner labels): only when you know none of them is in use.")
def clean_command(output: Output, images: bool, cache: bool, unowned: bool) -> int:
    """Remove what sdt-build left behind: containers and SLURM jobs whose owner process on this
    machine is gone (never those of a run, build or smoke test still going, nor another host's), and
    optionally images and caches."""
    from sdt_build.build.daemon import docker_client
    from sdt_build.build.image import clean
    from sdt_build.cache import cache_root
    from sdt_build.clients.slurm import cancel_leftovers, slurm_command
    from sdt_build.owner import UNOWNED
    from sdt_build.runtime.errors import EnvironmentProblem

    slurm = slurm_command("squeue", "--version") is not None
    found = cancel_leftovers() if slurm else []
    try:
        containers, removed_images = clean(docker_client(), images=images, unowned=unowned)
    except EnvironmentProblem:
        if not slurm:
            raise  # neither Docker nor SLURM here: say what is missing
        containers, removed_images = [], []  # an HPC login node: no Docker daemon
    found += containers
    emptied = []
    if cache and cache_root().exists():
        shutil.rmtree(cache_root())
        emptied.append(str(cache_root()))
    removed, left = [f for f in found if f.removed], [f for f in found if not f.removed]
    output.emit({"ok": True, "removed": [f.to_dict() for f in removed], "left": [f.to_dict() for f in left],
                 "images": removed_images, "cache": emptied})
    for each in found:
        output.say(f"{'[green]removed[/]' if each.removed else '[dim]left[/]'} {each.kind} {each.name} ({each.role}): "
                   f"{each.standing.why}")
    if any(f.standing.state == UNOWNED for f in left):
        output.say("  `sdt-build clean --unowned` removes those that name no owner, when you know none is in use")
    jobs = sum(f.kind == "SLURM job" for f in removed)
    output.say(f"[green]removed[/] {len(removed) - jobs} container(s) whose owner is gone, left {len(left)}, "
               f"{len(removed_images)} image(s)" + (f", cancelled {jobs} SLURM job(s)" if jobs else "")
               + (f", cache {cache_root()}" if cache else ""))
    return 0


@command(main, "base")
@click.option("--python", "python", default="3.11", show_default=True, help="Target Python (X.Y).")
@click.option("--force", is_flag=True, help="Bootstrap again even when the image exists.")
def base_command(output: Output, python: str, force: bool) -> int:
    """Bootstrap a base image from Debian packages (for machines that cannot pull python:X.Y-slim)."""
    from sdt_build.build.image import make_base_image

    choice = make_base_image(python, force=force, say=output.say)
    output.emit({"ok": True, "image": choice.image, "image_id": choice.image_id, "reason": choice.reason})
    output.say(f"[green]base[/] {choice.image} ({choice.reason})")
    return 0


@command(main, "doctor")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
def doctor_command(output: Output, directory: Path | None) -> int:
    """Check this machine for the journey: Docker, base image, indexes, disk, registry, client. The
    checks are the command's result: they go to stdout (with --quiet, those that are not ok)."""
    from sdt_build.doctor import diagnose

    checks = diagnose(directory)
    failed = any(c.status == "fail" for c in checks)
    output.emit({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    colors = {"ok": "green", "warning": "yellow", "fail": "red"}
    for check in checks:
        if not output.as_json and (output.shows or check.status != "ok"):
            out.print(f"[{colors[check.status]}]{check.status:>7}[/] {check.name}: {check.detail}"
                      + (f"  [green]fix:[/] {check.fix}" if check.fix else ""), highlight=False)
    return 10 if failed else 0
