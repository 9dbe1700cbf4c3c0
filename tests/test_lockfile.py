"""requirements.lock must match pyproject.toml: `make lock` re-resolves it, and this test fails
when the project's dependencies change without relocking (a package added or removed, or a range
that no longer admits the locked version). Every pin carries a hash, so `make install` can use
pip's --require-hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "metaweb (pyproject.toml)"


def declared() -> dict[str, Requirement]:
    """The project's direct requirements: its dependencies and its dev extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def locked() -> dict[str, dict]:
    """Each pin of the lock: its version, hash count and the packages that pulled it in."""
    pins: dict[str, dict] = {}
    current: dict | None = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if pin:
            current = {"version": pin.group(2), "hashes": 0, "via": set()}
            pins[canonicalize_name(pin.group(1).split("[")[0])] = current
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and (via := re.match(r"^\s*#\s+(?:via\s+)?(\S.*)$", line)):
            current["via"].add(via.group(1).strip())
    return pins


def test_every_declared_requirement_is_locked_at_a_version_it_admits():
    pins = locked()
    missing = sorted(name for name in declared() if name not in pins)
    assert not missing, f"not in requirements.lock: {missing}; run `make lock`"
    outside = {
        name: (str(req.specifier), pins[name]["version"])
        for name, req in declared().items()
        if not req.specifier.contains(pins[name]["version"], prereleases=True)
    }
    assert not outside, f"locked versions outside pyproject.toml's ranges: {outside}; run `make lock`"


def test_the_lock_names_no_direct_requirement_that_pyproject_dropped():
    direct = {name for name, pin in locked().items() if PROJECT in pin["via"]}
    stale = sorted(direct - set(declared()))
    assert not stale, f"requirements.lock still has {stale} from pyproject.toml; run `make lock`"


def test_every_pin_has_a_hash_and_torch_is_the_cpu_build():
    pins = locked()
    assert pins and all(pin["hashes"] for pin in pins.values())
    assert pins["torch"]["version"] == "2.13.0+cpu"
    assert not [name for name in pins if name.startswith("nvidia-")]
