"""Fetch the official dataset files, verified by MD5, written atomically."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .atomic import atomic_open

CHUNK = 1 << 16
TIMEOUT_S = 30


class DownloadError(RuntimeError):
    """No mirror delivered the file with the right checksum."""


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Stream `url` into `dest` through a temp file, keeping it only if the MD5 matches."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.md5()
        with atomic_open(dest) as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
            if digest.hexdigest() != md5:
                # Raising inside atomic_open discards the temp file: nothing is kept.
                raise DownloadError(
                    f"{url}: MD5 {digest.hexdigest()} does not match the expected {md5}"
                )


def download_file(
    name: str, md5: str, dest_dir: Path, mirrors: tuple[str, ...], *, progress: bool = True
) -> Path:
    """Download `name` from the first mirror that serves it intact into `dest_dir`."""
    dest = Path(dest_dir) / name
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            _fetch(url, dest, md5, progress)
            return dest
        except DownloadError as e:
            errors.append(str(e))
        except urllib.error.HTTPError as e:
            errors.append(f"{url}: HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise DownloadError(f"could not download {name}: " + "; ".join(errors))
