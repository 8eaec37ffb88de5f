"""A PEP 517 / PEP 660 build backend for dsmq_bun, standard library only.

Builds a pure-Python wheel of the `dsmq_bun` package (and an sdist of this directory), with
the name, version, description and Python requirement of pyproject.toml's [project] table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "dsmq_bun"
#: What the sdist carries besides the package.
SDIST_FILES = ("pyproject.toml", "README.md", "_backend/dsmq_build_backend.py")
#: Fixed timestamp for archive members, so that builds are reproducible.
EPOCH = (2024, 1, 1, 0, 0, 0)


def _project() -> dict[str, str]:
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as file:
        text = file.read()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the [project] table is flat `key = "string"` lines
        section = text.split("[project]", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"\s*$', section, re.MULTILINE))
    return tomllib.loads(text)["project"]


def _names() -> tuple[str, str, str]:
    project = _project()
    name = project["name"]
    return name, project["version"], re.sub(r"[-_.]+", "_", name).lower()


def _metadata() -> str:
    project = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        f"License: {project.get('license', '')}",
    ]
    readme = os.path.join(ROOT, "README.md")
    if os.path.exists(readme):
        with open(readme, encoding="utf-8") as file:
            lines += ["Description-Content-Type: text/markdown", "", file.read()]
    return "\n".join(lines) + "\n"


def _package_files() -> list[str]:
    found = []
    for directory, subdirectories, files in os.walk(os.path.join(ROOT, PACKAGE)):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".typed")):
                found.append(os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, "/"))
    return found


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, contents: dict[str, bytes]) -> str:
    _, version, dist = _names()
    filename = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    contents = dict(contents)
    contents[f"{info}/METADATA"] = _metadata().encode()
    contents[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: dsmq_build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    contents[f"{info}/top_level.txt"] = f"{PACKAGE}\n".encode()
    record = [_record_line(path, data) for path, data in contents.items()] + [f"{info}/RECORD,,"]
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in contents.items():
            wheel.writestr(zipfile.ZipInfo(path, EPOCH), data)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    contents = {}
    for path in _package_files():
        with open(os.path.join(ROOT, path), "rb") as file:
            contents[path] = file.read()
    return _write_wheel(wheel_directory, contents)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _, _, dist = _names()
    # A .pth line puts this directory on sys.path: edits to the package take effect at once.
    return _write_wheel(wheel_directory, {f"__editable__.{dist}.pth": (ROOT + "\n").encode()})


def build_sdist(sdist_directory, config_settings=None):
    _, version, dist = _names()
    base = f"{dist}-{version}"
    filename = f"{base}.tar.gz"
    members = [path for path in SDIST_FILES if os.path.exists(os.path.join(ROOT, path))] + _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in members:
            archive.add(os.path.join(ROOT, path), arcname=f"{base}/{path}", recursive=False)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return filename
