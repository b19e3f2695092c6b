"""``manifest.json``: what an engine directory holds, and the checks that make a bad engine fail at load time.

An engine directory (``engine/build/NAME/BACKEND/``) describes itself:

    manifest.json           this file's contents (``Manifest``)
    <graph>.onnx | .plan    one file per graph (``graphs.GRAPH_NAMES``); <graph>.onnx.data beside a graph
                            whose weights the exporter wrote as external data (over 2 GB)
    tokenizer file(s)       the model's own tokenizer, as its ``save_pretrained`` writes it:
                              kind "byte" (armor-tiny, armor-demo): armor_tokenizer.json
                              kind "hf" (`armor-ab model init`): tokenizer.json, tokenizer_config.json,
                              chat_template.jinja (whatever transformers writes for that tokenizer)

The manifest records the model config (whole, and its hash), every graph's file, SHA-256, size, inputs and
outputs (names, dtypes, shapes with named dynamic axes), the opset, the precision, the TensorRT optimisation
profiles, the parity figures measured at build time and the tool versions; ``tokenizer`` is
``{"kind", "file" (the main one), "files" (all of them)}`` and every tokenizer file has its SHA-256 in ``files``.
``kv_cache.dtype`` is the KV cache's I/O dtype: float32, or float16 for fp16 TensorRT engines (absent in
older manifests: float32).

``verify_engine_dir`` runs every check that does not need a runtime: the manifest parses and is of a known
format, the config matches its hash (and the caller's model, if given), the graph I/O the manifest declares is
what the config implies, every file exists with the recorded size and SHA-256, and no tokenizer file lies in
the directory that the manifest does not record (transformers would read it). ``load_engine_tokenizer`` loads
the tokenizer and checks its special ids against the config. The backends add the last check once a session
exists: the file's own I/O matches the manifest. Every failure is an ``EngineError`` that names the file at
fault, raised before any request runs.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.tokenizer import TOKENIZER_FILE, TextTokenizer, load_tokenizer

from .errors import EngineError
from .graphs import GRAPH_NAMES, KV_DTYPES, GraphSpec, TensorSpec, graph_specs

__all__ = ["EngineError", "Manifest", "GraphEntry", "verify_engine_dir"]

FORMAT = "armor-engine/1"
MANIFEST_FILE = "manifest.json"
BACKEND_DIRS = ("onnx", "tensorrt")
# Files a tokenizer loader reads when they are present: ARMOR's byte tokenizer, and what transformers'
# AutoTokenizer looks for in a directory. One of them in an engine directory but not in its manifest would
# change the tokenizer unnoticed (an armor_tokenizer.json would even turn an "hf" engine into a byte one).
TOKENIZER_FILE_NAMES = (
    TOKENIZER_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "config.json",
)


@dataclass
class GraphEntry:
    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def spec(self) -> GraphSpec:
        return GraphSpec(self.name, self.inputs, self.outputs)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            for t in self.inputs + self.outputs
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "dynamic_axes": {
                k: {str(i): d for i, d in v.items()} for k, v in self.dynamic_axes().items() if v
            },
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> GraphEntry:
        return cls(
            name=name,
            file=data["file"],
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )


@dataclass
class Manifest:
    name: str  # the recipe's name, e.g. armor-demo
    backend: str  # "onnx" | "tensorrt"
    precision: str  # "fp32" | "fp16" | "bf16"
    opset: int
    config: dict[str, Any]  # ArmorConfig.to_dict()
    config_hash: str
    model: dict[str, Any]  # source (name or dir), random_weights, model_name
    graphs: dict[str, GraphEntry]
    files: dict[str, dict[str, Any]]  # file name -> {"sha256", "bytes"} for every file but the manifest
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {"kind", "file", "files"}
    recipe: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)  # axis -> [min, opt, max]
    kv_cache: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)  # exporter, seconds, created_utc

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "opset": self.opset,
            "model": self.model,
            "config_hash": self.config_hash,
            "config": self.config,
            "tokenizer": self.tokenizer,
            "recipe": self.recipe,
            "graphs": {name: g.to_json() for name, g in self.graphs.items()},
            "profiles": self.profiles,
            "kv_cache": self.kv_cache,
            "parity": self.parity,
            "files": self.files,
            "versions": self.versions,
            "build": self.build,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            name=data["name"],
            backend=data["backend"],
            precision=data["precision"],
            opset=int(data["opset"]),
            config=data["config"],
            config_hash=data["config_hash"],
            model=data["model"],
            graphs={name: GraphEntry.from_json(name, g) for name, g in data["graphs"].items()},
            files=data["files"],
            tokenizer=data.get("tokenizer", {}),
            recipe=data.get("recipe", {}),
            profiles=data.get("profiles", {}),
            kv_cache=data.get("kv_cache", {}),
            parity=data.get("parity", {}),
            versions=data.get("versions", {}),
            build=data.get("build", {}),
        )

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
        return path

    @property
    def kv_dtype(self) -> str:
        """The KV cache's I/O dtype (``kv_cache.dtype``): fp32, or fp16 for fp16 TensorRT engines; manifests
        written before it was recorded are fp32."""
        return self.kv_cache.get("dtype", "float32")

    def armor_config(self) -> ArmorConfig:
        return ArmorConfig.from_dict(self.config)

    def tokenizer_files(self) -> list[str]:
        """The tokenizer's files (manifests before the "files" list name only the main one)."""
        files = self.tokenizer.get("files")
        if files is None:
            files = [self.tokenizer["file"]] if self.tokenizer.get("file") else []
        return list(files)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def tool_versions() -> dict[str, str]:
    """Versions of everything that shaped the engine (tensorrt only if importable: it needs CUDA)."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    dists = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu")
    for dist in (*dists, "tensorrt", "tensorrt-cu12", "tensorrt-cu13"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    versions["armor-ab"] = _own_version()
    return versions


def _own_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("armor-ab")
    except md.PackageNotFoundError:
        return "source"


def read_manifest(directory: Path | str) -> Manifest:
    """Parse ``DIR/manifest.json``; any problem is an ``EngineError`` naming it."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise EngineError(directory, "engine directory does not exist")
    if not path.is_file():
        raise EngineError(
            path, "manifest missing: not an engine directory (build one with `armor-ab engine build`)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(path, f"unreadable manifest ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EngineError(
            path, f"unknown manifest format {data.get('format') if isinstance(data, dict) else None!r}"
        )
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(path, f"malformed manifest ({exc!r})") from exc


def check_config(manifest: Manifest, directory: Path, expected: ArmorConfig | None = None) -> ArmorConfig:
    """The manifest's config matches its recorded hash, and the caller's model config when one is given."""
    path = Path(directory) / MANIFEST_FILE
    try:
        config = manifest.armor_config()
        config.validate_armor()
    except Exception as exc:  # noqa: BLE001 - any failure to rebuild the config is a bad manifest
        raise EngineError(path, f"config does not load ({exc})") from exc
    if config.config_hash() != manifest.config_hash:
        raise EngineError(
            path, f"config hash {config.config_hash()} does not match the recorded {manifest.config_hash}"
        )
    if expected is not None and expected.config_hash() != manifest.config_hash:
        raise EngineError(
            path,
            f"engine was built for config {manifest.config_hash} ({manifest.model.get('model_name')}), "
            f"but the model's config is {expected.config_hash()} ({expected.model_name}): rebuild the engine",
        )
    return config


def check_graph_specs(manifest: Manifest, directory: Path, config: ArmorConfig) -> None:
    """Every graph is present and its declared I/O is what the config implies."""
    path = Path(directory) / MANIFEST_FILE
    if manifest.kv_dtype not in KV_DTYPES:
        raise EngineError(path, f"kv_cache.dtype {manifest.kv_dtype!r} is not one of {KV_DTYPES}")
    expected = graph_specs(config, manifest.kv_dtype)
    missing = [name for name in GRAPH_NAMES if name not in manifest.graphs]
    if missing:
        raise EngineError(path, f"graphs missing from the manifest: {', '.join(missing)}")
    for name, spec in expected.items():
        entry = manifest.graphs[name]
        if entry.inputs != spec.inputs or entry.outputs != spec.outputs:
            raise EngineError(
                Path(directory) / entry.file,
                f"shape mismatch: graph {name!r} is declared as {_io(entry.spec)}, the config implies {_io(spec)}",
            )


def check_files(manifest: Manifest, directory: Path) -> None:
    """Every file exists, has the recorded size (a truncated copy fails here) and SHA-256."""
    directory = Path(directory)
    referenced = {g.file for g in manifest.graphs.values()}
    for name in referenced - set(manifest.files):
        raise EngineError(directory / name, "graph file has no SHA-256 record in the manifest")
    tokenizer = manifest.tokenizer_files()
    if not tokenizer:
        raise EngineError(directory / MANIFEST_FILE, "the manifest names no tokenizer file")
    for name in sorted(set(tokenizer) - set(manifest.files)):
        raise EngineError(directory / name, "tokenizer file has no SHA-256 record in the manifest")
    for name in TOKENIZER_FILE_NAMES:
        path = directory / name
        found = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path] if path.exists() else []
        for extra in (p for p in found if p.relative_to(directory).as_posix() not in manifest.files):
            raise EngineError(
                extra,
                "not recorded in the manifest, but a tokenizer loader reads it: it would change the engine's "
                "tokenizer (remove it, or rebuild the engine)",
            )
    for name, record in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise EngineError(path, "engine file missing")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise EngineError(
                path, f"truncated or altered engine file: {size} bytes, manifest says {record['bytes']}"
            )
        digest = sha256_file(path)
        if digest != record["sha256"]:
            raise EngineError(
                path, f"corrupt engine file: SHA-256 {digest[:16]}… != manifest {record['sha256'][:16]}…"
            )


def verify_engine_dir(
    directory: Path | str, expected_config: ArmorConfig | None = None, backend: str | None = None
) -> tuple[Manifest, ArmorConfig]:
    """All load-time checks that need no runtime; returns the manifest and the model config."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if backend is not None and manifest.backend != backend:
        raise EngineError(
            directory / MANIFEST_FILE, f"this is a {manifest.backend!r} engine, not a {backend!r} one"
        )
    config = check_config(manifest, directory, expected_config)
    check_graph_specs(manifest, directory, config)
    check_files(manifest, directory)
    return manifest, config


def load_engine_tokenizer(directory: Path | str, manifest: Manifest, config: ArmorConfig) -> TextTokenizer:
    """The tokenizer the engine was built with (``config.tokenizer_kind``: byte or Hugging Face), from its
    own directory; it must load, be of the config's kind and have the config's special ids."""
    directory = Path(directory)
    kind = config.tokenizer_kind
    path = directory / (manifest.tokenizer.get("file") or "")
    try:
        tokenizer = load_tokenizer(directory, kind)
        wanted = {
            "kind": (tokenizer.kind, kind),
            "text vocabulary": (tokenizer.vocab_size, config.text_vocab_size),
            "eos id": (tokenizer.eos_id, config.text_eos_id),
            "pad id": (tokenizer.pad_id, config.text_pad_id),
            "image placeholder id": (tokenizer.image_context_id, config.image_token_id),
        }
    except Exception as exc:  # noqa: BLE001 - tokenizers' own errors are plain Exceptions; all mean a bad file
        raise EngineError(path, f"the engine's {kind!r} tokenizer does not load ({exc})") from exc
    wrong = [f"{what} {got!r} (config: {want!r})" for what, (got, want) in wanted.items() if got != want]
    if wrong:
        raise EngineError(path, "the tokenizer does not fit the engine's config: " + ", ".join(wrong))
    return tokenizer


def check_session_io(
    path: Path, entry: GraphEntry, inputs: list[tuple[str, str, tuple]], outputs: list[tuple[str, str, tuple]]
) -> None:
    """A loaded graph's own I/O (name, dtype, shape; a str or None dim is dynamic) matches the manifest."""

    def norm(items: list[tuple[str, str, tuple]]) -> list[tuple[str, str, tuple]]:
        return [
            (n, d, tuple(s if isinstance(s, int) and s >= 0 else "?" for s in shape)) for n, d, shape in items
        ]

    def want(specs: tuple[TensorSpec, ...]) -> list[tuple[str, str, tuple]]:
        return [(t.name, t.dtype, tuple(s if isinstance(s, int) else "?" for s in t.shape)) for t in specs]

    got_in, got_out = norm(inputs), norm(outputs)
    if got_in != want(entry.inputs) or got_out != want(entry.outputs):
        raise EngineError(
            path,
            f"shape mismatch: the file's I/O is {got_in} -> {got_out}, "
            f"the manifest declares {want(entry.inputs)} -> {want(entry.outputs)}",
        )


def _io(spec: GraphSpec) -> str:
    show = lambda ts: ", ".join(f"{t.name}{list(t.shape)}" for t in ts)  # noqa: E731
    return f"({show(spec.inputs)}) -> ({show(spec.outputs)})"
