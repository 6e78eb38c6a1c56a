"""The plug's dependencies against SDT's pins: the bounded dependency walk, the findings before any
resolver, and the lock (pip-compile or uv)."""
