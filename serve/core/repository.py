"""Finding the models in a models directory: flat `<name>.onnx` files, as `python -m export`
writes them, and the Triton / KServe model repository layout, as `export --triton-repo`
writes it, so one directory serves here and in Triton unchanged:

    <dir>/<name>/config.pbtxt        optional: version policy, labels file, parameters
    <dir>/<name>/labels.txt          optional: one class name per line
    <dir>/<name>/<version>/model.onnx
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

# A model name is a file stem or folder of the models directory: letters, digits, '.', '_'
# and '-', starting with a letter or digit, so a name can never be a path.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_MODEL_FILENAME = "model.onnx"
DEFAULT_LABELS_FILENAME = "labels.txt"


@dataclass(frozen=True)
class ModelSource:
    """One version of one model, before loading; `error` when it cannot be loaded at all."""

    name: str
    path: Path  # the .onnx file
    version: str = ""  # "" for a flat file: its model_version says
    config: object | None = None  # Triton's ModelConfig (serve.gen.model_config_pb2), from config.pbtxt
    labels_file: Path | None = None
    error: str = ""


def _parse_config(path: Path):
    """config.pbtxt as Triton's own ModelConfig message (text format, parsed by protobuf)."""
    from google.protobuf import text_format

    from ..gen import model_config_pb2 as mc

    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


def _chosen_versions(config, versions: list[int]) -> list[int]:
    """Triton's version policy: latest N (its default, N = 1, when config.pbtxt names none),
    all, or specific. Without config.pbtxt every version is served."""
    if config is None:
        return versions
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return versions
    if kind == "specific":
        return [v for v in versions if v in set(policy.specific.versions)]
    count = policy.latest.num_versions if kind == "latest" else 1
    return versions[-max(count, 1):]


def _repository_model(folder: Path) -> list[ModelSource]:
    name = folder.name
    config, labels_file = None, None
    config_path = folder / "config.pbtxt"
    if config_path.is_file():
        try:
            config = _parse_config(config_path)
        except Exception as e:  # text_format.ParseError, UnicodeDecodeError, OSError
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return [ModelSource(name, config_path, error=f"{config_path}: cannot read it as a ModelConfig "
                                                         f"({message})")]
        label_names = [o.label_filename for o in config.output if o.label_filename]
        labels_file = folder / (label_names[0] if label_names else DEFAULT_LABELS_FILENAME)
    elif (folder / DEFAULT_LABELS_FILENAME).is_file():
        labels_file = folder / DEFAULT_LABELS_FILENAME
    if labels_file is not None and (not labels_file.is_file() or labels_file.parent != folder):
        labels_file = None
    filename = (config.default_model_filename if config is not None and config.default_model_filename
                else DEFAULT_MODEL_FILENAME)
    versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        return [ModelSource(name, folder, error=f"{folder}: no version folders (<name>/1/{filename})")]
    sources = []
    for version in _chosen_versions(config, versions):
        path = folder / str(version) / filename
        error = "" if path.is_file() else f"{path}: no such file"
        sources.append(ModelSource(name, path, str(version), config, labels_file, error))
    if not sources:
        return [ModelSource(name, folder, error=f"{folder}: its version_policy selects none of the versions "
                                                f"{', '.join(map(str, versions))}")]
    return sources


def find_models(directory: Path, model_name: str | None = None) -> list[ModelSource]:
    """Every model version in `directory`, sorted by name then version. Raises
    NotADirectoryError or FileNotFoundError, naming the directory.

    `model_name`: the directory holds the one model to serve under that name, as KServe's
    storage initializer leaves a storageUri in /mnt/models: a single `.onnx` file (any
    name), a model folder itself (`1/model.onnx`, optional config.pbtxt), or a repository
    of one model. A repository of several models serves them all; the name must be one of
    them (ValueError naming them, otherwise)."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"models directory {directory} does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"--models {directory} is a file, not a directory of models")
    if model_name is not None and _is_model_folder(directory):
        sources = _repository_model(directory)
    else:
        sources = _models_in(directory)
    if model_name is not None and sources:
        sources = _named(sources, model_name, directory)
    return sorted(sources, key=lambda s: (s.name, version_key(s.version)))


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.pbtxt").is_file() or any(q.is_dir() and q.name.isdigit() for q in folder.iterdir())


def _models_in(directory: Path) -> list[ModelSource]:
    folders = {p.name: p for p in directory.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)}
    repository = {name: p for name, p in folders.items() if _is_model_folder(p)}
    sources = []
    for path in sorted(directory.glob("*.onnx")):
        if not NAME_PATTERN.match(path.stem):
            continue
        if path.stem in repository:
            sources.append(ModelSource(path.stem, path, error=f"{path} and {repository[path.stem]}/ both define "
                                                              f"model {path.stem!r}; keep one"))
            del repository[path.stem]
        else:
            sources.append(ModelSource(path.stem, path))
    for folder in repository.values():
        sources.extend(_repository_model(folder))
    return sources


def _named(sources: list[ModelSource], model_name: str, directory: Path) -> list[ModelSource]:
    """The one model of `sources` renamed `model_name`; several left as they are, if one is it."""
    if not NAME_PATTERN.match(model_name):
        raise ValueError(f"--model-name {model_name[:80]!r} is not valid: expected 1-128 letters, digits, '.', "
                         "'_' or '-', starting with a letter or digit")
    names = sorted({s.name for s in sources})
    if len(names) == 1:
        return [dataclasses.replace(s, name=model_name) for s in sources]
    if model_name not in names:
        raise ValueError(f"--model-name {model_name}: {directory} holds several models ({', '.join(names)}) and "
                         "none of them has that name")
    return sources


def version_key(version: str) -> int:
    """Versions order by number, as Triton's do; a name that is not a number sorts first."""
    return int(version) if version.isdigit() else 0
