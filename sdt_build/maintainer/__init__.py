"""Tools that remake sdt-build's data: the pinned SDT constraints and the dependency page."""
