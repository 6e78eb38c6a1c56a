"""The CLI fuzzed with a user's faults: folder contents (every user file, helpers, links, output
folders), keys and keys files, and options. Whatever the user wrote, the answer is a coded error
or success, never an internal error (SDT-E999, exit 70). Cheap paths only (`check --offline`,
`run --dry-run`, `report`): no index, no cluster, no SDT pipeline."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner
from faultkit import trouble_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdt_build.cli import main
from sdt_build.runtime.errors import INTERNAL_ERROR

FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
junk = st.one_of(text, st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["\0", "\ufeff", "\r\n", "\t", "#", "[", "]", "'''", '"', "\\", "ä" * 500,
                                  "x" * 300, "y" * 100_000]))
requirement_lines = st.lists(st.one_of(junk, st.sampled_from([
    "pandas", "numpy<1.20", "boto3>=1.26", "pvlib==0.10.*", "foo[bar]>=1; python_version < '3'", "foo==",
    "===1", "-r other.txt", "-r ../../etc/passwd", "-c constraints.txt", "--index-url http://127.0.0.1:9/simple",
    "--extra-index-url file:///nonexistent", "-e .", "./local_pkg", "pvlib @ https://127.0.0.1:9/x-0.1-py3-none-any.whl",
    "git+https://127.0.0.1:9/repo.git@v1#egg=thing", "solar-data-tools==1.0", "dask==1.0", "a" * 300,
    "name ; extra == 'x'", "pkg>=1,<0", "pkg~=1", "--hash=sha256:00", "-f ./wheels", "pkg --config-settings x=y",
])), max_size=6)
toml_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), text,
                        st.lists(st.one_of(st.integers(), text), max_size=3))
toml_text = st.one_of(junk, st.dictionaries(
    st.sampled_from(["name", "python", "base_image", "registry", "plug_class", "client_class", "keys",
                     "build_sdists", "upstream_fixes", "nmae"]), toml_values, max_size=4).map(
    lambda d: "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items())),
    st.dictionaries(st.sampled_from(["fix_shifts", "fix_shift", "solver", "verbose", "power_col", "x y"]),
                    toml_values, max_size=3).map(
        lambda d: "[run_pipeline]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in d.items())))
code_edits = st.lists(st.one_of(
    st.tuples(st.just("replace"), st.sampled_from(["DataPlug", "LocalClient", "def get_data", "self, key", "import",
                                                   "class ", "return", "(", ":", "env = ["]), junk),
    st.tuples(st.just("insert"), st.integers(0, 80), junk),
    st.tuples(st.just("encode"), st.sampled_from(["latin-1", "utf-16", "utf-8-sig"]), st.booleans()),
), max_size=3)
extra_files = st.lists(st.tuples(
    st.sampled_from(["helper.py", "credentials.py", "pandas.py", "sub/__init__.py", "out/.sdt-output.json",
                     "out/journal.jsonl", "run.json", ".dockerignore", "other.txt", "constraints.txt", "data.csv",
                     "link", "dataplug.py", "sub/up", "deep/" * 20 + "x.py", "ü.py", "dask-scratch-space/x"]),
    junk), max_size=4)


def _edit(path: Path, edits) -> None:
    source = path.read_text()
    for kind, where, what in edits:
        if kind == "replace":
            source = source.replace(where, what, 1)
        elif kind == "insert":
            lines = source.splitlines(keepends=True)
            lines.insert(min(where, len(lines)), what + "\n")
            source = "".join(lines)
    encoded = source.encode()
    for kind, encoding, declared in edits:
        if kind == "encode":
            encoded = ((f"# -*- coding: {encoding} -*-\n" if declared else "") + source).encode(encoding, "replace")
    path.write_bytes(encoded)


def _cli(*args: str) -> tuple[int, str]:
    """The CLI in this process (as `sdt-build ARGS` runs it): its exit code and output."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _assert_no_internal_error(code: int, output: str, args) -> None:
    assert code != INTERNAL_ERROR and "SDT-E999" not in output, (args, output[-3000:])


def sometimes(strategy, default):
    """Half the time the file as it was: a fault in one file at a time reaches the later checks."""
    return st.one_of(st.just(default), strategy)


@FUZZ
@given(plug=sometimes(code_edits, []), client=sometimes(code_edits, []), requirements=requirement_lines,
       toml=sometimes(toml_text, ""), extra=sometimes(extra_files, []), json_output=st.booleans())
def test_no_folder_a_user_writes_makes_check_fail_internally(plug, client, requirements, toml, extra, json_output):
    with tempfile.TemporaryDirectory() as parent:
        folder = trouble_folder(Path(parent), name="fuzzed")
        _edit(folder / "dataplug.py", [(k, *rest) for k, *rest in plug])
        _edit(folder / "client.py", [(k, *rest) for k, *rest in client])
        (folder / "requirements.txt").write_text("\n".join(requirements) + "\n", errors="surrogateescape")
        (folder / "sdt.toml").write_text(toml if isinstance(toml, str) else "")
        for name, content in extra:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name in ("link", "sub/up"):  # anywhere, itself (a loop), its parent (a cycle), nowhere
                shutil.rmtree(path, ignore_errors=True)
                path.unlink(missing_ok=True)
                path.symlink_to(content.replace("\0", "")[:200] or path.name)  # a target the OS takes
            elif not path.is_dir():
                path.write_text(content, errors="surrogateescape")
        args = ("check", str(folder), "--offline", *(("--json",) if json_output else ()))
        _assert_no_internal_error(*_cli(*args), args)


key_text = st.one_of(junk, st.sampled_from(['[13, [2011, 2012]]', '{"a": 1}', '[]', '[null]', 'NaN', '1e999',
                                             '"', '[' * 2000, '12E4', '["echo", 1]']))
keys_file = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(st.integers(), st.floats(), text, st.none(), st.lists(st.integers(), max_size=2),
                       st.dictionaries(text, st.integers(), max_size=2)), max_size=5).map(json.dumps),
    st.lists(st.lists(text, max_size=3).map(",".join), max_size=5).map("\n".join),
)
options = st.lists(st.sampled_from([
    ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "abc"), ("--retries", "-5"), ("--retries", "1e3"),
    ("--max-in-flight", "0"), ("--plots", "-1"), ("--lost-cluster-timeout", "inf"), ("--plot-key", "[["),
    ("--image", ""), ("--image", "UPPER:case"), ("--output", "/proc/forbidden"), ("--resume",), ("--force",),
    ("--json",), ("--quiet",), ("--verbose",), ("--keys", "/nonexistent"),
]), max_size=4)


@FUZZ
@given(keys=st.lists(key_text, max_size=3), content=keys_file, suffix=st.sampled_from([".json", ".csv", ".txt", ""]),
       chosen=options)
def test_no_keys_or_options_make_a_run_fail_internally(keys, content, suffix, chosen):
    with tempfile.TemporaryDirectory() as parent:
        folder = trouble_folder(Path(parent), name="fuzzed")
        path = Path(parent) / f"keys{suffix}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape"))
        args = ["run", str(folder), "--dry-run", "--keys", str(path)]
        for key in keys:
            args += ["--key", key]
        for option in chosen:
            args += list(option)
        _assert_no_internal_error(*_cli(*args), args)


@settings(FUZZ, max_examples=30)  # a page is drawn with matplotlib: about 2 s each
@given(journal=st.lists(st.one_of(junk, st.dictionaries(st.sampled_from(["key", "status", "stage", "seconds",
                                                                         "values", "message", "plots"]),
                                                        toml_values, max_size=5).map(json.dumps)), max_size=4),
       record=st.one_of(junk, st.dictionaries(text, toml_values, max_size=3).map(json.dumps),
                        toml_values.map(json.dumps)),
       plot_key=st.one_of(st.none(), key_text))
def test_no_output_folder_makes_report_fail_internally(journal, record, plot_key):
    with tempfile.TemporaryDirectory() as parent:
        folder = Path(parent) / "out"
        folder.mkdir()
        (folder / "journal.jsonl").write_text("\n".join(journal) + "\n", errors="surrogateescape")
        (folder / "run.json").write_text(record, errors="surrogateescape")
        args = ["report", str(folder), "--out", str(Path(parent) / "page.html"),
                *(("--key", plot_key) if plot_key is not None else ())]
        _assert_no_internal_error(*_cli(*args), args)
