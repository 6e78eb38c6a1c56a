"""The dependency walk: the plug's packages followed down through their metadata for the target,
with SDT's pins held, until one set of versions fits them all, or none can.

A resolution (resolvelib, the library pip's resolver is built on) over a bounded set of
candidates. SDT's pinned packages stay at their pins unless the plug names them (their
requirements are data in ``constraints/``, read offline); a package the plug names may move
only as far as needed: its pin is tried first, and what the rest of SDT's set needs of it still
holds. Every other package offers its newest ``NEWEST`` releases with a wheel for the target and
``SPREAD`` older ones spread over the rest of its history; a plug line that is a wheel's URL offers
that one wheel. Requirements come from the indexes' metadata files (``index.metadata``, cached on
disk; a URL's wheel is read the same way); the catalog of known minimums and ABI breaks
(``constraints/needs.toml``) adds what metadata leaves out. A time budget bounds the whole walk,
and a walk that stops early says so. The look-ups run in a pool of the walk's own (``index.Pool``)
that ends with it: no look-up, read-ahead or cache write outlives ``walk``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import lru_cache

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, ResolutionTooDeep, Resolver

from sdt_build.constraints import SdtSet, catalog
from sdt_build.requirements import combined_specs, satisfiable, url_wheel
from sdt_build.sources import index
from sdt_build.sources.pipconfig import IndexSettings

NEWEST = 8  # releases per package, newest first
SPREAD = 6  # older releases, spread evenly down to the oldest
ROUNDS = 3000  # resolution rounds
BUDGET_SECONDS = 10.0  # the whole walk (SDT_WALK_BUDGET overrides)
# The order look-ups are served in: what the walk waits on, what it will ask next, then guesses.
NOW, NEXT, AHEAD, GUESS = range(4)


class Stopped(Exception):
    """The walk ran out of time or rounds, or an index did not answer: ``args[0]`` says which."""


@dataclass(frozen=True)
class Candidate:
    name: str
    version: Version
    extras: frozenset[str] = frozenset()
    release: index.Release | None = None  # None: SDT's pinned release (requirements from constraints/)


@dataclass(frozen=True)
class Clash:
    """How a plug line reaches requirements that cannot all hold, in the form both the walk and the
    resolver's report give: ``s3fs 2026.9.0 → aiobotocore 2.25.0 … 2.26.0 → botocore 1.40.0 …
    1.40.70 needs python-dateutil<3.0.0,>=2.1, but SDT's set pins python-dateutil 4.0.0``."""

    chain: tuple[tuple[str, str], ...]  # (package, versions) from the plug's line down to the one that needs
    name: str  # the package needed
    needs: str  # the specifier the last link asks of it
    against: str  # what it meets: "SDT's set pins python-dateutil 4.0.0", "requirements.txt asks …"
    pinned: str | None = None  # SDT's pin of ``name`` when that is what it meets
    reason: str | None = None  # a catalog fact, when the need is one (an ABI break)

    @property
    def root(self) -> str:
        return self.chain[0][0]

    def text(self) -> str:
        links = " → ".join(f"{name} {versions}".strip() for name, versions in self.chain)
        why = f" ({self.reason})" if self.reason else ""
        return f"{links} needs {self.name}{self.needs}{why}, but {self.against}"


@dataclass(frozen=True)
class Walk:
    """What the walk found: the versions that fit, or the clashes, or why it stopped early."""

    fits: bool | None  # None: stopped early
    versions: dict[str, str] = field(default_factory=dict)
    clashes: tuple[Clash, ...] = ()
    stopped: str | None = None
    unfinished: tuple[str, ...] = ()  # packages not followed to the end when it stopped
    windows: dict[str, str] = field(default_factory=dict)  # package → the newest release the walk tried
    read: int = 0
    seconds: float = 0.0


def budget_seconds() -> float:
    return float(os.environ.get("SDT_WALK_BUDGET") or BUDGET_SECONDS)


def walk(roots: list[Requirement], limits: list[Requirement], sdt: SdtSet, sources: IndexSettings, *,
         build_sdists: bool = False, budget: float | None = None) -> Walk:
    """Whether some versions of ``roots`` (the plug's lines) fit SDT's set and each other.

    ``limits`` narrow versions without asking for the package (``-c`` lines). Packages the roots
    name leave SDT's pins; the rest of SDT's set stays pinned. Returns within ``budget`` seconds
    (SDT_WALK_BUDGET) and ``index.GRACE_SECONDS``, whatever the indexes do."""
    started = time.perf_counter()
    seconds = budget_seconds() if budget is None else budget
    lookups = index.Pool(index.Session(sources, seconds), "sdt-walk")
    result, fits, stopped = None, None, None
    try:
        provider = _Provider(roots, limits, sdt, lookups, seconds)
        result = Resolver(provider, BaseReporter()).resolve(roots, max_rounds=ROUNDS)
        fits = True
    except ResolutionImpossible:
        fits = False
    except ResolutionTooDeep:
        stopped = f"it tried {ROUNDS} combinations"
    except Stopped as exc:
        stopped = str(exc)
    finally:
        lookups.close()
    found = provider.outcome(fits, started, stopped)
    if result is None:
        return found
    versions = {c.name: str(c.version) for c in result.mapping.values() if c.name not in provider.fixed}
    return replace(found, versions=versions)


class _Provider(AbstractProvider):
    def __init__(self, roots: list[Requirement], limits: list[Requirement], sdt: SdtSet, lookups: index.Pool,
                 seconds: float):
        self.sdt, self.lookups, self.seconds = sdt, lookups, seconds
        self.env = sdt.env
        self.roots = {canonicalize_name(r.name): r for r in roots}
        # a root that is a wheel's URL has one candidate, that wheel (its metadata read from the URL)
        self.urls = {name: index.Release(wheel.version, False, None, True, False, wheel.url)
                     for name, r in self.roots.items() if r.url and (wheel := url_wheel(r))}
        self.fixed = {name: Version(pin) for name, pin in sdt.pins.items() if name not in self.roots}
        self.limits: dict[str, SpecifierSet] = {}
        self.why: dict[str, str] = {}  # name → what its limit is, for messages
        for requirement in limits:
            self._limit(canonicalize_name(requirement.name), requirement.specifier,
                        f"requirements.txt's -c files ask {requirement}")
        for name in self.roots.keys() & sdt.pins.keys():  # a lifted pin: what the rest of SDT's set needs
            for who, spec in sdt.needs.get(name, []):
                if canonicalize_name(who.split()[0]) not in self.roots and str(spec):
                    self._limit(name, spec, f"SDT's set needs {name}{spec} ({who})")
        self.breaks = catalog()[1]
        self.futures: dict[str, Future] = {}  # a package's releases, or a release's metadata (by URL)
        self.asking = threading.Lock()  # one look-up per key, whichever thread asks; nothing runs under it
        self.parents: dict[str, dict[str, set[Version]]] = {}  # name → parent name → parent versions
        self.tried: dict[str, set[Version]] = {}
        # (needed name, what it meets) → parent name → parent version → the specifier it asks
        self.clashes: dict[tuple[str, str], dict[str, dict[Version, str]]] = {}
        self.facts: dict[tuple[str, str], tuple[str | None, str | None]] = {}  # → (SDT's pin, catalog reason)
        self.windows: dict[str, str] = {}
        self.installable: dict[str, list[index.Release]] = {}
        self.chosen: dict[tuple[str, str], list[Candidate]] = {}  # (name, specifier) → its window
        self.needs: dict[tuple, list[Requirement]] = {}  # (name, version, extras) → what it asks for

    def _limit(self, name: str, spec: SpecifierSet, why: str) -> None:
        self.limits[name] = self.limits.get(name, SpecifierSet()) & spec
        self.why[name] = "; ".join(filter(None, (self.why.get(name), why)))

    # --- resolvelib's provider interface ----------------------------------------------------

    def identify(self, requirement_or_candidate) -> str:
        name = canonicalize_name(requirement_or_candidate.name)
        extras = sorted(canonicalize_name(e) for e in requirement_or_candidate.extras)
        return f"{name}[{','.join(extras)}]" if extras else name

    def get_preference(self, identifier, resolutions, candidates, information, backtrack_causes):
        name = identifier.split("[")[0]
        causes = {canonicalize_name(c.requirement.name) for c in backtrack_causes}
        return (name not in self.fixed, name not in causes, name not in self.roots, identifier)

    def find_matches(self, identifier, requirements, incompatibilities):
        self._in_time()
        name, _, rest = identifier.partition("[")
        extras = frozenset(rest.rstrip("]").split(",")) if rest else frozenset()
        spec = self.limits.get(name, SpecifierSet())
        for requirement in requirements[identifier]:
            spec &= requirement.specifier
        excluded = {c.version for c in incompatibilities[identifier]}
        if name in self.urls:
            release = self.urls[name]
            return [Candidate(name, release.version, extras, release)] if spec.contains(release.version, True) else []
        if name in self.fixed:
            pin = self.fixed[name]
            return [Candidate(name, pin, extras)] if spec.contains(pin, prereleases=True) and pin not in excluded \
                else []
        pin = self.sdt.pins.get(name)
        if pin is not None and spec.contains(pin, prereleases=True) and Version(pin) not in excluded:
            # a lifted pin is tried first, and the index only asked when it does not fit
            return lambda: iter([Candidate(name, Version(pin), extras)] + [
                c for c in self._matches(name, spec, excluded, extras)() if str(c.version) != pin])
        return self._matches(name, spec, excluded, extras)

    def _matches(self, name: str, spec: SpecifierSet, excluded: set[Version], extras: frozenset[str]):
        window = self._window(name, spec)
        if window:
            self.windows[name] = str(window[0].version)
        found = [replace(c, extras=extras) for c in window if c.version not in excluded]
        for at, candidate in enumerate(found):  # read ahead: the likeliest (the newest) first
            self._prefetch(candidate, NEXT if at == 0 else AHEAD, read_ahead=True)
        return lambda: (c for c in found if c.extras or not self._dead(c))

    def is_satisfied_by(self, requirement, candidate) -> bool:
        return canonicalize_name(requirement.name) == candidate.name and \
            requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate):
        self._in_time()
        if candidate.name in self.fixed and not candidate.extras:
            return []  # SDT's pinned set holds together; what it needs of lifted packages is in the limits
        chosen = self._needs(candidate)
        for requirement in chosen:
            self._releases_ahead(canonicalize_name(requirement.name), NEXT)
        return chosen

    def _needs(self, candidate: Candidate) -> list[Requirement]:
        """What ``candidate`` asks for on the target (catalog facts included), noted for the messages once."""
        memo = (candidate.name, candidate.version, candidate.extras)
        if memo in self.needs:
            return self.needs[memo]
        self._in_time()
        self.tried.setdefault(candidate.name, set()).add(candidate.version)
        requires = self._requires(candidate)
        if candidate.extras:
            empty = {**self.env, "extra": ""}
            chosen = [Requirement(f"{candidate.name}=={candidate.version}")] + [
                r for r in requires if r.marker and not r.marker.evaluate(empty)
                and any(r.marker.evaluate({**self.env, "extra": e}) for e in candidate.extras)]
        else:
            chosen = [r for r in requires if self._on_target(r)]
        reasons = {}
        for rule in self.breaks:
            if rule.applies(candidate.name, candidate.version):
                chosen.append(rule.needs)
                reasons[canonicalize_name(rule.needs.name)] = rule.reason
        for requirement in chosen:
            self._note(candidate, requirement, reasons.get(canonicalize_name(requirement.name)))
        self.needs[memo] = chosen
        return chosen

    def _on_target(self, requirement: Requirement) -> bool:
        """Whether ``requirement`` applies on the target (its marker, no extra asked)."""
        return not requirement.marker or requirement.marker.evaluate({**self.env, "extra": ""})

    def _dead(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` asks for something SDT's pinned set rules out: the walk need not try it."""
        return any(canonicalize_name(r.name) in self.fixed and
                   not r.specifier.contains(self.fixed[canonicalize_name(r.name)], prereleases=True)
                   for r in self._needs(candidate))

    # --- candidates and their requirements --------------------------------------------------

    def _window(self, name: str, spec: SpecifierSet) -> list[Candidate]:
        """The releases the walk tries for ``name`` within ``spec``: the pin first (a lifted one), the
        newest ``NEWEST``, and ``SPREAD`` older ones down to the oldest (worked out once per specifier)."""
        memo = (name, str(spec))
        if memo not in self.chosen:
            exact = any(s.operator in ("==", "===") and "*" not in s.version for s in spec)
            usable = [r for r in self._installable(name) if (exact or not r.yanked) and spec.contains(r.version, True)]
            finals = [r for r in usable if not r.version.is_prerelease]
            usable = finals if finals and not _mentions_prerelease(spec) else usable
            older = usable[NEWEST:]
            step = max(1, len(older) // SPREAD)
            chosen = usable[:NEWEST] + older[step - 1::step][:SPREAD - 1] + older[-1:]
            self.chosen[memo] = [Candidate(name, r.version, release=r) for r in dict.fromkeys(chosen)]
        return self.chosen[memo]

    def _installable(self, name: str) -> list[index.Release]:
        """Releases of ``name`` the image could install: for its Python, with a wheel for the target."""
        if name not in self.installable:
            future = self._releases_ahead(name, NOW)
            self.lookups.hurry(future, NOW)
            try:
                releases = future.result(timeout=self.lookups.session.left())
            except (TimeoutError, index.OutOfTime) as exc:
                raise Stopped(f"{self._ran_out()} waiting for the index's releases of {name}") from exc
            except index.NotOnIndex:
                releases = []
            except index.IndexUnreachable as exc:
                raise Stopped(f"the index did not answer for {name} ({exc})") from exc
            self.installable[name] = self._usable(releases)
        return self.installable[name]

    def _usable(self, releases: list[index.Release]) -> list[index.Release]:
        return [r for r in releases if r.allows_python(self.sdt.python) and r.wheel_for_target and r.wheel_url]

    def _ask(self, key: str, rank: int, function, *args) -> tuple[Future, bool]:
        """The one look-up of ``key``, asked at ``rank`` unless it was already: (its future, whether new)."""
        with self.asking:
            if key in self.futures:
                return self.futures[key], False
            self.futures[key] = future = self.lookups.submit(rank, function, *args)
            return future, True

    def _releases_ahead(self, name: str, rank: int) -> Future | None:
        """The index's releases of ``name``, asked for as soon as it may be needed."""
        if name in self.fixed:
            return None
        return self._ask(name, rank, index.releases, name, self.sdt.python, self.lookups.session)[0]

    def _prefetch(self, candidate: Candidate, rank: int, read_ahead: bool = False) -> None:
        """Ask for ``candidate``'s metadata at ``rank``; ``read_ahead``: then guess at the windows its
        needs open (one level down), so the walk rarely waits on the index."""
        release = candidate.release
        if release is None or not release.wheel_url or release.wheel_url in self.futures or self._pinned_meta(candidate):
            return
        known = index.cached_metadata(release)
        if known is not None:  # saved by an earlier walk, which read ahead then
            future = Future()
            future.set_result(known)
            with self.asking:
                self.futures.setdefault(release.wheel_url, future)
            return
        future, new = self._ask(release.wheel_url, rank, index.metadata, release, self.lookups.session)
        if new and read_ahead:
            future.add_done_callback(self._read_ahead)

    def _over(self, done: Future) -> bool:
        """Whether a read-ahead callback has nothing to do: the walk is over, or ``done`` did not succeed."""
        return self.lookups.closed or done.cancelled() or done.exception() is not None

    def _read_ahead(self, done: Future) -> None:
        """Once a candidate's metadata is in (in the pool): ask for the releases its needs may take.
        It never waits, does nothing once the walk is over, and whatever fails here (an index
        error) the walk meets itself."""
        if self._over(done):
            return
        try:
            for requirement in _parsed(done.result().requires):
                name = canonicalize_name(requirement.name)
                if name not in self.fixed and self._on_target(requirement):
                    spec = self.limits.get(name, SpecifierSet()) & requirement.specifier
                    self._releases_ahead(name, AHEAD).add_done_callback(
                        lambda releases, n=name, sp=spec: self._fetch_window(n, sp, releases))
        except Exception:  # noqa: BLE001 - see the docstring
            return

    def _fetch_window(self, name: str, spec: SpecifierSet, releases: Future) -> None:
        """Once ``name``'s releases are in: ask for its window's metadata (as ``_read_ahead``)."""
        if self._over(releases):
            return
        try:
            self.installable.setdefault(name, self._usable(releases.result()))  # so _window never waits
            for at, candidate in enumerate(self._window(name, spec)):
                if at == 0:  # the likeliest path, followed all the way down
                    self._prefetch(candidate, AHEAD, read_ahead=True)
                else:
                    self._prefetch(candidate, GUESS)
        except Exception:  # noqa: BLE001 - as _read_ahead
            return

    def _pinned_meta(self, candidate: Candidate) -> dict | None:
        info = self.sdt.meta.get(candidate.name)
        return info if info and info["version"] == str(candidate.version) else None

    def _requires(self, candidate: Candidate) -> list[Requirement]:
        pinned = self._pinned_meta(candidate)
        if pinned is not None:
            return _parsed(tuple(pinned["requires"]))
        self._prefetch(candidate, NOW)
        future = self.futures[candidate.release.wheel_url]
        self.lookups.hurry(future, NOW)
        try:
            found = future.result(timeout=self.lookups.session.left())
        except (TimeoutError, index.OutOfTime) as exc:
            raise Stopped(f"{self._ran_out()} waiting for {candidate.name} {candidate.version}'s metadata") from exc
        except index.IndexUnreachable as exc:
            raise Stopped(f"the index did not answer for {candidate.name} ({exc})") from exc
        except Exception as exc:  # a wheel whose metadata cannot be read
            raise Stopped(f"reading {candidate.name} {candidate.version}'s metadata: {type(exc).__name__}") from exc
        return _parsed(found.requires) if found else []

    def _in_time(self) -> None:
        if not self.lookups.session.left():
            raise Stopped(self._ran_out())

    def _ran_out(self) -> str:
        return f"its time budget of {self.seconds:g} s ran out"

    # --- what the walk learns on the way, for the messages ----------------------------------

    def _note(self, parent: Candidate, requirement: Requirement, reason: str | None) -> None:
        name = canonicalize_name(requirement.name)
        self.parents.setdefault(name, {}).setdefault(parent.name, set()).add(parent.version)
        spec = requirement.specifier
        if name in self.fixed:
            if spec.contains(self.fixed[name], prereleases=True):
                return
            against, pinned = f"SDT's set pins {name} {self.fixed[name]}", str(self.fixed[name])
        else:
            other = self.roots.get(name)
            if other is not None and not satisfiable([spec, other.specifier], []):
                against = f"requirements.txt asks `{other}`"
            elif name in self.limits and not satisfiable([spec, self.limits[name]], []):
                against = self.why[name]
            elif name in self.urls and not spec.contains(self.urls[name].version, prereleases=True):
                against = f"requirements.txt installs {name} {self.urls[name].version} from a URL"
            elif name not in self.urls and not any(spec.contains(r.version, prereleases=True)
                                                   for r in self._installable(name)):
                against = (f"no release of {name} in that range has a wheel for Python {self.sdt.python} on "
                           "linux x86_64")
            else:
                return
            pinned = None
        self.clashes.setdefault((name, against), {}).setdefault(parent.name, {})[parent.version] = str(spec)
        self.facts[(name, against)] = (pinned, reason)

    def outcome(self, fits: bool | None, started: float, stopped: str | None = None) -> Walk:
        clashes = self._clashes() if fits is False else ()
        unfinished = tuple(sorted(n for n in self.roots if n not in self.fixed)) if fits is None else ()
        with self.asking:
            asked = list(self.futures.items())
        read = sum(1 for key, f in asked if "://" in key and f.done() and not f.cancelled() and f.exception() is None)
        return Walk(fits, {}, clashes, stopped, unfinished, dict(self.windows), read,
                    time.perf_counter() - started)

    def _clashes(self) -> tuple[Clash, ...]:
        """The clashes found, the most binding first: one that every release of a plug line tried
        meets itself (no other release of that line could help), then the one most tried releases share."""
        def conclusive(parents: dict[str, dict[Version, str]]) -> bool:
            return any(name in self.roots and set(asked) >= self.tried.get(name, set()) for name, asked in parents.items())

        ranked = sorted(self.clashes.items(),
                        key=lambda item: (not conclusive(item[1]), -sum(len(v) for v in item[1].values())))
        found = []
        for (name, against), parents in ranked[:3]:
            parent, asked = max(parents.items(), key=lambda item: len(item[1]))
            chain = self._path_to_root(parent) + ((parent, _span(set(asked))),)
            found.append(Clash(chain, name, asked[max(asked)], against, *self.facts[(name, against)]))
        return tuple(found)

    def _path_to_root(self, name: str) -> tuple[tuple[str, str], ...]:
        """The links from a plug line down to ``name`` (exclusive), shortest first."""
        paths = {name: ()}
        queue = [name]
        while queue:
            current = queue.pop(0)
            if current in self.roots:
                return paths[current]
            for parent, versions in sorted(self.parents.get(current, {}).items()):
                if parent not in paths:
                    paths[parent] = ((parent, _span(self.tried.get(parent, versions))),) + paths[current]
                    queue.append(parent)
        return ()


@lru_cache(maxsize=4096)
def _parsed(texts: tuple[str, ...]) -> list[Requirement]:
    found = []
    for text in texts:
        try:
            found.append(Requirement(text))
        except Exception:  # a malformed line in someone's metadata: pip skips it too
            continue
    return found


def _span(versions: set[Version]) -> str:
    ordered = sorted(versions)
    return str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]} … {ordered[-1]}"


def _mentions_prerelease(spec: SpecifierSet) -> bool:
    return any(Version(item.version.rstrip(".*")).is_prerelease for item in spec
               if item.version.rstrip(".*").replace(".", "").isalnum())


def fix_line(clash: Clash, sdt: SdtSet, lifted: set[str]) -> str | None:
    """The requirement line that would move SDT's pin just far enough for ``clash``, when SDT's
    packages allow a version the chain also accepts."""
    if clash.pinned is None:
        return None
    needs = [SpecifierSet(clash.needs)] + [s for who, s in sdt.needs.get(clash.name, [])
                                           if canonicalize_name(who.split()[0]) not in lifted]
    if not satisfiable(needs, []):
        return None
    return f"{clash.name}{combined_specs(needs)}"

