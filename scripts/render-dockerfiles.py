"""Write dockerfiles/<example>.Dockerfile: what templates/Dockerfile.j2 renders for each example."""

from pathlib import Path

from sdt_build.build.render import render_dockerfile
from sdt_build.dependencies.resolve import lock
from sdt_build.userfolder.project import load_project

ROOT = Path(__file__).resolve().parent.parent

for folder in sorted((ROOT / "examples").iterdir()):
    if (folder / "dataplug.py").exists() and not folder.name.startswith("broken"):
        project = load_project(folder, require_env=False)
        target = ROOT / "dockerfiles" / f"{folder.name}.Dockerfile"
        target.write_text(render_dockerfile(project, lock(project)))
        print(f"wrote {target.relative_to(ROOT)}")
