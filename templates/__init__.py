"""Dockerfile templates (Jinja). The wheel installs this folder as sdt_build.templates (sdt_build/resources.py)."""
