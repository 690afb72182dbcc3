"""The filterbank scan with a trained model: every event the search finds is scored by a fold ensemble (flip
TTA, logits averaged over views and checkpoints, as evaluate.py does), and the candidates are ranked by it.

    scan.py --catalog cadences.csv --out scans/night1 --checkpoints outputs/<run>          # a run folder
    scan.py --cadence f1.h5 ... f6.h5 --out scans/run1 --checkpoints a/fold0.safetensors b/fold1.safetensors

A model fits a scan when it was trained on scan snippets: the checkpoint's config says so (window
`follows_drift`) and gives the geometry it needs (rows per observation, channel width, time row), which every
file of a cadence must have; anything else is refused before the search starts, naming the checkpoint.

The search (src/search/scan.py) keeps each coarse channel's event snippets in its chunk folder; they are scored
chunk by chunk, so memory is one chunk's snippets whatever the number of candidates, and a killed run scores
only what is left. Locally the model is loaded once, in this process. With `--engine ray`, Ray Data feeds the
chunks to a pool of scoring actors (`map_batches` with an actor class, each holding the model once, on a GPU
when one is asked for) that serve every cadence of the catalog.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.core.cadence import loaded_observations
from src.core.cli import progress_bar
from src.core.config import Config
from src.core.errors import CheckpointError, ConfigError
from src.core.files import write_csv_atomically, write_text_atomically
from src.engine.checkpoint import CheckpointInfo, find_checkpoints, load_weights, read_checkpoint_info
from src.models.classifier import build_model
from src.search.cadence import Cadence
from src.search.outputs import model_score_path, snippet_path, write_cadence_outputs, write_catalog_outputs
from src.search.scan import Execution, ScanSettings, chunk_bounds, ray_session, scan_catalog
from src.transforms.augment import tta_view
from src.transforms.images import batch_to_images

MODEL_STATE_FILE = "model.json"
RESOLUTION_TOLERANCE = 0.01  # a file's channel width and time row may differ from the model's by this share


@dataclass(frozen=True)
class ScanModel:
    """The checkpoints that score a scan's events, and how."""

    infos: tuple[CheckpointInfo, ...]
    threshold: float = 0.5  # probability at which a candidate is worth a person's look
    batch_size: int = 256

    @property
    def config(self) -> Config:
        return self.infos[0].config

    @property
    def snippet_channels(self) -> int:
        return self.config.observation_shape[1]

    def description(self) -> str:
        names = sorted({i.config.model_name for i in self.infos})
        views = sorted({", ".join(i.config.tta) for i in self.infos})
        return f"{len(self.infos)} checkpoint(s) of {', '.join(names)}, TTA {'; '.join(views)}"

    def state(self) -> dict:
        """What the scores depend on: the checkpoints (path, size, modification time)."""
        return {
            "checkpoints": [
                {"path": str(i.path.resolve()), "bytes": i.path.stat().st_size, "mtime_ns": i.path.stat().st_mtime_ns}
                for i in self.infos
            ]
        }


def checkpoint_paths(sources: Sequence[str | Path]) -> list[Path]:
    """Checkpoint files, and every fold checkpoint of the run folders among `sources`."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += find_checkpoints(source)
        elif source.is_file():
            paths.append(source)
        else:
            raise CheckpointError(f"{source}: no such checkpoint file or run folder")
    return paths


def geometry(cfg: Config) -> tuple:
    return (cfg.window, tuple(cfg.observation_shape), tuple(cfg.resolution))


def open_scan_model(sources: Sequence[str | Path], threshold: float = 0.5, batch_size: int = 256) -> ScanModel:
    """The checkpoints of `sources`, checked to be scan models of one geometry."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"--model-threshold {threshold}: must be a probability in (0, 1)")
    if batch_size < 1:
        raise ConfigError(f"--model-batch-size {batch_size}: at least 1")
    infos = tuple(read_checkpoint_info(p) for p in checkpoint_paths(sources))
    for info in infos:
        cfg = info.config
        if cfg.window != "follows_drift":
            rows, channels = cfg.observation_shape
            raise ConfigError(
                f"{info.path}: trained on Kaggle-style snippets ({rows} rows x {channels} channels per observation, "
                "one frequency window for the whole cadence); a scan needs a model trained on scan snippets "
                "(window follows_drift), e.g. configs/scan_cpu.yaml"
            )
        if geometry(cfg) != geometry(infos[0].config):
            raise ConfigError(
                f"{info.path}: its geometry {geometry(cfg)} differs from {infos[0].path}'s {geometry(infos[0].config)}"
            )
    return ScanModel(infos, threshold, batch_size)


def check_cadence_geometry(model: ScanModel, cadence: Cadence) -> None:
    """Every file of the cadence has the rows per observation, channel width and time row the model was
    trained on."""
    cfg, path = model.config, model.infos[0].path
    rows = cfg.observation_shape[0]
    df_hz, dt_s = cfg.resolution
    for header in cadence.headers:
        if header.n_rows != rows:
            raise ConfigError(f"{path}: trained on {rows} rows per observation; {header.path} has {header.n_rows}")
        for name, have, need in (("channel width", header.df_hz, df_hz), ("time row", header.tsamp, dt_s)):
            if abs(have / need - 1) > RESOLUTION_TOLERANCE:
                raise ConfigError(f"{path}: trained at a {name} of {need:.4g}; {header.path} has {have:.4g}")


class SnippetScorer:
    """Every checkpoint's network, loaded once, scoring batches of snippets: logits averaged over each
    checkpoint's TTA views, then over the checkpoints."""

    def __init__(self, model: ScanModel, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.batch_size = model.batch_size
        self.members: list[tuple[Config, torch.nn.Module]] = []
        for info in model.infos:
            network = build_model(info.config, load_pretrained=False)
            load_weights(network, info.path)
            self.members.append((info.config, network.to(self.device).eval()))

    @torch.no_grad()
    def __call__(self, snippets: np.ndarray) -> np.ndarray:
        """(n, 6, rows, channels) snippets -> (n,) float64 logits."""
        total = np.zeros(len(snippets), dtype=np.float64)
        for first in range(0, len(snippets), self.batch_size):
            # a writable copy: torch warns on the read-only memory map the chunk's snippets are read through
            batch = torch.from_numpy(np.array(snippets[first : first + self.batch_size]))
            batch = batch.to(self.device, torch.float16)
            for cfg, network in self.members:
                images = batch_to_images(batch[:, list(loaded_observations(cfg.view, cfg.background))], cfg)
                views = [network(tta_view(images, view))["logits"].float() for view in cfg.tta]
                total[first : first + len(batch)] += torch.stack(views).mean(0).cpu().numpy()
        return total / len(self.members)


def score_chunk(scorer: SnippetScorer, folder: Path, chunk: int) -> int:
    """Score one chunk's snippets into its model file (written whole); returns the number of events."""
    snippets = np.load(snippet_path(folder, chunk), mmap_mode="r")
    logits = scorer(snippets) if len(snippets) else np.zeros(0)
    write_csv_atomically(pd.DataFrame({"model_logit": logits}), model_score_path(folder, chunk))
    return len(logits)


def prepare_model_state(folder: Path, model: ScanModel, overwrite: bool) -> None:
    """A cadence folder scored by other checkpoints is refused unless `overwrite` (which rescans it)."""
    state_path = folder / MODEL_STATE_FILE
    if state_path.is_file() and json.loads(state_path.read_text()) != model.state() and not overwrite:
        raise FileExistsError(
            f"{folder}: holds scores of other checkpoints ({MODEL_STATE_FILE}); pass --overwrite to rescan and "
            "score it again, or choose another --out"
        )


class _RayChunkScorer:
    """A Ray Data actor: the model loaded once, then chunk after chunk of any cadence scored to its files."""

    def __init__(self, model: ScanModel, device: str, cpus: float) -> None:
        torch.set_num_threads(max(1, int(cpus)))  # the CPUs Ray gave the actor, not the node's
        self.scorer = SnippetScorer(model, device)

    def __call__(self, batch: dict) -> dict:
        counts = [
            score_chunk(self.scorer, Path(f), int(c)) for f, c in zip(batch["folder"], batch["chunk"], strict=True)
        ]
        return {"folder": batch["folder"], "events": np.asarray(counts)}


def score_chunks_ray(pending: list[tuple[Path, int]], model: ScanModel, run: Execution, actors: int) -> None:
    """Every pending chunk scored by a pool of `actors` Ray Data actors (on the Ray session already running)."""
    import ray

    dataset = ray.data.from_items([{"folder": str(f), "chunk": c} for f, c in pending])
    device = "cuda" if run.gpus_per_task > 0 else "cpu"
    scored = dataset.map_batches(
        _RayChunkScorer,
        fn_constructor_args=(model, device, run.cpus_per_task),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=run.cpus_per_task,
        num_gpus=run.gpus_per_task,
    )
    for _ in scored.iter_batches(batch_size=None):  # drives the pipeline; the actors write the files
        pass


def scan_with_model(
    cadences: list[Cadence], out: Path, settings: ScanSettings, model: ScanModel, run: Execution, actors: int = 1
) -> list[Path]:
    """Scan every cadence keeping its events' snippets, score them all, then write the outputs ranked by the
    model. Everything a user could get wrong (geometry, weights, a folder scored by another model) is checked
    before the search starts."""
    out = Path(out)
    for cadence in cadences:
        check_cadence_geometry(model, cadence)
        prepare_model_state(out / cadence.name, model, run.overwrite)
    scorer = SnippetScorer(model, run.device if run.engine == "local" else "cpu")  # weights load, or one error line
    search = dataclasses.replace(run, snippet_channels=model.snippet_channels, assemble=False)
    with ray_session(run.address) if run.engine == "ray" else contextlib.nullcontext():
        folders = scan_catalog(cadences, out, settings, search)
        pending = []
        for folder, cadence in zip(folders, cadences, strict=True):
            state = json.dumps(model.state(), indent=1)
            if not (folder / MODEL_STATE_FILE).is_file() or (folder / MODEL_STATE_FILE).read_text() != state:
                write_text_atomically(folder / MODEL_STATE_FILE, state)
            chunks = range(len(chunk_bounds(cadence, settings)))
            pending += [(folder, c) for c in chunks if not model_score_path(folder, c).is_file()]
        if run.engine == "ray" and pending:
            score_chunks_ray(pending, model, run, actors)
        else:
            for folder, chunk in progress_bar(pending, desc="model", unit="chunk"):
                score_chunk(scorer, folder, chunk)
    summary = {"description": model.description(), "threshold": model.threshold}
    for folder, cadence in zip(folders, cadences, strict=True):
        write_cadence_outputs(folder, cadence, settings, chunk_bounds(cadence, settings), summary)
    write_catalog_outputs(out, folders)
    return folders
