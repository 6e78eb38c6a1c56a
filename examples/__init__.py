"""Complete user folders to start from. The wheel installs this folder as sdt_build.examples (sdt_build/resources.py)."""
