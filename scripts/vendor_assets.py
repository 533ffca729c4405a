#!/usr/bin/env python3
"""Third-party browser assets, committed as built files with their licences.

Mercato's pages work offline: nothing is fetched from a CDN at run time and nobody needs
Node.js to install or run it. The CSS framework, htmx, Alpine.js and the chart library are
taken from the npm registry at the versions pinned in ``vendor_assets.json`` and committed
under ``src/mercato/web/static/vendor/`` (axe-core, used only by the browser tests, under
``tests/vendor/``).

    python scripts/vendor_assets.py check      # every file present, hashes as recorded
    python scripts/vendor_assets.py refresh    # fetch the pinned versions again with npm

``refresh`` downloads each pinned tarball with ``npm pack``, checks it against the
registry's integrity hash recorded in the manifest, copies the listed files and writes
their SHA-256 into the manifest. To upgrade a package, change its version, clear its
``integrity`` and run ``refresh``; review the diff of the manifest.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "scripts" / "vendor_assets.json"

MIT_TEXT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def load_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def save_manifest(manifest: dict[str, Any]) -> None:
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(manifest: dict[str, Any]) -> list[str]:
    """Every vendored file exists with its recorded hash, and each package has a licence."""
    problems: list[str] = []
    for package in manifest["packages"]:
        target = ROOT / package["target"]
        for source, entry in package["files"].items():
            path = target / entry["to"]
            if not path.is_file():
                problems.append(f"{package['name']}: {path.relative_to(ROOT)} is missing")
            elif sha256(path) != entry["sha256"]:
                problems.append(
                    f"{package['name']}: {path.relative_to(ROOT)} differs from {source}"
                    f"@{package['version']}"
                )
        if not (target / "LICENSE").is_file():
            problems.append(f"{package['name']}: no LICENSE in {package['target']}")
    return problems


def _npm_pack(name: str, version: str, workdir: Path) -> Path:
    out = subprocess.run(
        ["npm", "pack", "--silent", f"{name}@{version}"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    return workdir / out.stdout.strip().splitlines()[-1]


def _integrity(tarball: Path) -> str:
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def _licence_text(package_dir: Path, meta: dict[str, Any]) -> str:
    for candidate in sorted(package_dir.glob("LICEN[CS]E*")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    if meta.get("license") != "MIT":
        raise SystemExit(f"{meta['name']}: no licence file and not MIT; add one by hand")
    author = meta.get("author")
    holder = author.get("name") if isinstance(author, dict) else author
    return f"MIT License\n\nCopyright (c) {holder or meta['name'] + ' contributors'}\n\n{MIT_TEXT}"


def refresh_package(package: dict[str, Any], workdir: Path) -> None:
    tarball = _npm_pack(package["name"], package["version"], workdir)
    integrity = _integrity(tarball)
    if package.get("integrity") and package["integrity"] != integrity:
        raise SystemExit(f"{package['name']}@{package['version']}: integrity mismatch")
    package["integrity"] = integrity
    unpacked = workdir / tarball.stem
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    package_dir = unpacked / "package"
    meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    target = ROOT / package["target"]
    target.mkdir(parents=True, exist_ok=True)
    for source, entry in package["files"].items():
        destination = target / entry["to"]
        shutil.copyfile(package_dir / source, destination)
        entry["sha256"] = sha256(destination)
    licence = _licence_text(package_dir, meta)
    notice = package_dir / "NOTICE"  # Apache-2.0 asks for it to travel with the files
    if notice.is_file():
        licence += "\n\n" + notice.read_text(encoding="utf-8")
    header = f"{package['name']} {package['version']} ({meta.get('license')})\n\n"
    (target / "LICENSE").write_text(header + licence, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "refresh"])
    parser.add_argument("--package", help="refresh only this package")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    if args.command == "refresh":
        with tempfile.TemporaryDirectory() as tmp:
            for package in manifest["packages"]:
                if args.package in (None, package["name"]):
                    refresh_package(package, Path(tmp))
        save_manifest(manifest)
    problems = check(manifest)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(manifest['packages'])} packages, every file as recorded")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
