"""PEP 517 build backend: one pinned PyPI wheel, re-wheeled without its declared dependencies.

pip cannot take ``--no-deps`` per line of a requirements file, so neither can the pip section of
environment.yml. Listing this folder there (``- ./no-deps/FOLDER``) does the same as
``pip install --no-deps NAME==VERSION``: pip builds the folder with this backend, which

1. downloads the wheel of ``[tool.brainattr-no-deps] requirement`` (``pip download --no-deps
   --only-binary :all:``, so the user's pip configuration and cache apply),
2. checks its sha256 against ``[tool.brainattr-no-deps] sha256``,
3. returns the same wheel (same name, version, files, entry points, licence files) with the
   ``Requires-Dist`` and ``Provides-Extra`` lines removed from its METADATA and RECORD updated.

pip then records NAME==VERSION as installed, exactly as after ``pip install --no-deps``.
This file is identical in every folder of no-deps/ (tests/test_packaging.py checks it).
Folder names have no hyphen: pip would take ``name-version`` for a versioned source and cache the
built wheel across pin changes.
"""
from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11: tomli is a build requirement there
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
DROPPED = ("Requires-Dist:", "Provides-Extra:")


def _config():
    cfg = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["brainattr-no-deps"]
    name, version = (s.strip() for s in cfg["requirement"].split("=="))
    return name, version, cfg["sha256"].lower()


def strip_dependencies(metadata: str) -> str:
    """METADATA without its Requires-Dist and Provides-Extra header lines (the body is kept)."""
    header, sep, body = metadata.partition("\n\n")
    kept = [line for line in header.split("\n") if not line.startswith(DROPPED)]
    return "\n".join(kept) + sep + body


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def rewheel(source: Path, wheel_directory: Path) -> str:
    """Copy the wheel ``source`` into ``wheel_directory`` under the same file name, without its
    declared dependencies; return the file name."""
    target = Path(wheel_directory) / Path(source).name
    with zipfile.ZipFile(source) as zin:
        names = zin.namelist()
        dist_info = {n.split("/", 1)[0] for n in names if re.match(r"[^/]+\.dist-info/METADATA$", n)}
        if len(dist_info) != 1:
            raise RuntimeError(f"{source}: expected one .dist-info folder, found {sorted(dist_info)}")
        dist_info = dist_info.pop()
        metadata_name, record_name = f"{dist_info}/METADATA", f"{dist_info}/RECORD"
        metadata = strip_dependencies(zin.read(metadata_name).decode("utf-8")).encode("utf-8")
        record = []
        # stored, not deflated: the wheel only goes from here to pip, and its big files (a GGUF,
        # .nii.gz atlases) do not compress anyway
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                if info.filename == record_name:
                    continue
                data = metadata if info.filename == metadata_name else zin.read(info)
                zout.writestr(info, data, compress_type=zipfile.ZIP_STORED)
                if not info.is_dir():
                    record.append(f"{info.filename},{_record_hash(data)},{len(data)}")
            record.append(f"{record_name},,")
            zout.writestr(record_name, "\n".join(record) + "\n")
    return target.name


def _download(folder: str) -> Path:
    name, version, sha256 = _config()
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "--disable-pip-version-check", "--dest", folder, f"{name}=={version}"],
                   check=True, stdout=sys.stderr)
    wheels = sorted(Path(folder).glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download {name}=={version}: expected one wheel, got {wheels}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{wheels[0].name}: sha256 {digest}, expected {sha256} "
                           f"(no-deps/{HERE.name}/pyproject.toml)")
    return wheels[0]


# -- PEP 517 hooks ----------------------------------------------------------------------------
# No prepare_metadata_for_build_wheel: pip then builds the wheel once and reads its metadata.

def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with tempfile.TemporaryDirectory(prefix="brainattr-no-deps-") as folder:
        return rewheel(_download(folder), Path(wheel_directory))
