"""The docs, Markdown. The wheel installs this folder as sdt_build.docs: `sdt-build docs TOPIC` prints one."""
