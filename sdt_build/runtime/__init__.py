"""What an image and every worker venv hold of sdt_build, and nothing else: the plug contract, keys
and result rows, errors and redaction, the parity check, the upstream fixes, the task a worker runs
for one key and the smoke probe. Copied whole (with the package's facade) into every image and
worker venv; it imports nothing of sdt_build outside this folder (tests/test_architecture.py).
"""
