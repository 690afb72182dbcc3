"""A scanned cadence's files, assembled from its chunk results: hits in turbo_seti's `.dat` format (one per
observation) and as CSV, the events CSV with turbo_seti's event columns, the ranked candidate table, the plots
and `report.md`; and the catalog's summary over its cadences.

Units are the ones turbo_seti's files use: frequencies in MHz, drift rates in Hz/s (the sign of the frequency
change: with a negative foff a hit moving to higher channels has a negative rate), SNR. A hit's frequency is
its frequency at the first row of its observation; `freq_start`/`freq_end` are the frequencies its track spans
over the observation (boxcar included). Alongside them, the pixel coordinates a model needs to cut a snippet:
the coarse channel (`chunk`), its first channel, and the track's start channel in every observation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.files import write_atomically, write_csv_atomically, write_text_atomically
from src.data.filterbank import FilterbankHeader
from src.search.plots import plot_candidate, plot_overview
from src.search.windows import WINDOW_LEVEL

DAT_RULE = "# --------------------------\n"
DAT_COLUMNS = (
    "Top_Hit_#",
    "Drift_Rate",
    "SNR",
    "Uncorrected_Frequency",
    "Corrected_Frequency",
    "Index",
    "freq_start",
    "freq_end",
    "SEFD",
    "SEFD_freq",
    "Coarse_Channel_Number",
    "Full_number_of_hits",
)
HIT_COLUMNS = [
    *("obs", "file", "source", "on", "chunk", "index", "channel", "drift", "width", "snr"),
    *("drift_rate", "frequency", "freq_start", "freq_end"),
]
TOP_CANDIDATES_IN_REPORT = 10
CHUNK_FOLDER = "chunks"


def drift_rate_hz_s(header: FilterbankHeader, drift_channels) -> np.ndarray:
    """Channels between the first and last row -> Hz/s."""
    rate = np.asarray(drift_channels, dtype=float) * header.foff * 1e6 / (max(header.n_rows - 1, 1) * header.tsamp)
    return rate + 0.0  # no negative zero in the files


def ra_dec_text(header: FilterbankHeader) -> tuple[str, str]:
    """RA and DEC as turbo_seti's header writes them (astropy's sexagesimal text)."""
    from astropy.coordinates import Angle

    return Angle(header.src_raj, unit="hourangle").to_string(), Angle(header.src_dej, unit="deg").to_string()


def hit_table(hits: pd.DataFrame, cadence, bounds: list[tuple[int, int]]) -> pd.DataFrame:
    """Chunk hits with their file, source, frequencies and drift rates."""
    rows = []
    for k, header in enumerate(cadence.headers):
        these = hits[hits["obs"] == k].sort_values(["chunk", "channel"], kind="stable").copy()
        rate = drift_rate_hz_s(header, these["drift"])
        span = np.stack(
            [these["channel"] - (these["width"] - 1) / 2, these["channel"] + these["drift"] + (these["width"] - 1) / 2]
        )
        these["file"] = header.path.name
        these["source"] = header.source_name
        these["on"] = cadence.on[k]
        these["drift_rate"] = rate
        these["frequency"] = header.frequency_mhz(these["channel"].to_numpy())
        these["freq_start"] = header.frequency_mhz(span.min(axis=0)) if len(these) else []
        these["freq_end"] = header.frequency_mhz(span.max(axis=0)) if len(these) else []
        these["index"] = (these["channel"] - [bounds[c][0] for c in these["chunk"]]).astype(int)
        rows.append(these)
    table = pd.concat(rows, ignore_index=True)
    return table[HIT_COLUMNS]


def write_dat(path: Path, header: FilterbankHeader, hits: pd.DataFrame, max_drift: float) -> None:
    """One observation's hits as turbo_seti's .dat (its header lines and tab-separated columns)."""
    ra, dec = ra_dec_text(header)
    lines = [
        "# -------------------------- o --------------------------\n",
        f"# File ID: {header.path.stem}.h5 \n",
        "# -------------------------- o --------------------------\n",
        f"# Source:{header.source_name}\n",
        f"# MJD: {header.tstart:18.12f}\tRA: {ra}\tDEC: {dec}\n",
        f"# DELTAT: {header.tsamp:10.6f}\tDELTAF(Hz): {header.foff * 1e6:10.6f}\t"
        f"max_drift_rate: {max_drift:10.6f}\tobs_length: {header.duration_s:10.6f}\n",
        DAT_RULE,
        "# " + "".join(f"{c} \t" for c in DAT_COLUMNS) + "\n",
        DAT_RULE,
    ]
    per_chunk = hits["chunk"].value_counts()
    for number, hit in enumerate(hits.itertuples(index=False), start=1):
        lines.append(
            f"{number:06d}\t{hit.drift_rate:10.6f}\t{hit.snr:10.6f}\t{hit.frequency:14.6f}\t{hit.frequency:14.6f}\t"
            f"{hit.index:d}\t{hit.freq_start:14.6f}\t{hit.freq_end:14.6f}\t0.0\t{0.0:14.6f}\t"
            f"{hit.chunk:d}\t{per_chunk[hit.chunk]:d}\t\n"
        )
    write_text_atomically(path, "".join(lines))


def event_table(events: pd.DataFrame, hits: pd.DataFrame, cadence, bounds, max_drift: float) -> pd.DataFrame:
    """Events with turbo_seti's event columns (of the event's reference hit) and ours."""
    first = cadence.headers[0]
    on_numbers = {k: n for n, k in enumerate([k for k, on in enumerate(cadence.on) if on], start=1)}
    starts = cadence.start_seconds()
    first_on = cadence.on.index(True)
    table = pd.DataFrame(
        {
            "DriftRate": [
                float(drift_rate_hz_s(cadence.headers[o], d))
                for o, d in zip(events["obs"], events["drift"], strict=True)
            ],
            "SNR": events["snr"],
            "Freq": first.frequency_mhz(events["channel"].to_numpy()),
            "ChanIndx": (events["channel"] - [bounds[c][0] for c in events["chunk"]]).astype(int),
            "FreqStart": first.frequency_mhz((events["channel"] - events["width"] / 2).to_numpy()),
            "FreqEnd": first.frequency_mhz((events["channel"] + events["drift"] + events["width"] / 2).to_numpy()),
            "CoarseChanNum": events["chunk"],
            "FullNumHitsInRange": [int((hits["chunk"] == c).sum()) for c in events["chunk"]],
            "FileID": [cadence.headers[o].path.name for o in events["obs"]],
            "Source": [cadence.headers[o].source_name.upper() for o in events["obs"]],
            "MJD": [cadence.headers[o].tstart for o in events["obs"]],
            "RA": [ra_dec_text(cadence.headers[o])[0] for o in events["obs"]],
            "DEC": [ra_dec_text(cadence.headers[o])[1] for o in events["obs"]],
            "DELTAT": [cadence.headers[o].tsamp for o in events["obs"]],
            "DELTAF": [cadence.headers[o].foff * 1e6 for o in events["obs"]],
            "max_drift_rate": max_drift,
            "obs_length": [cadence.headers[o].duration_s for o in events["obs"]],
            "Hit_ID": [f"{cadence.target.upper()}_{i}" for i in range(len(events))],
            "status": [f"on_table_{on_numbers[o]}" for o in events["obs"]],
            "in_n_ons": events["in_n_ons"],
            "RFI_in_range": events["n_off_hits"],
            "delta_t": [starts[o] - starts[first_on] for o in events["obs"]],
        }
    )
    ours = events.drop(columns=["snr", "in_n_ons", "n_off_hits"]).rename(columns={"drift": "drift_channels"})
    for k, header in enumerate(cadence.headers):
        ours[f"freq_obs{k}"] = header.frequency_mhz(ours[f"channel_obs{k}"].to_numpy())
    return pd.concat([table, ours], axis=1)


def candidate_table(events: pd.DataFrame, cadence, bounds, filter_level: int) -> pd.DataFrame:
    """Events at `filter_level` or above (and the windows a model passed), ranked by the model's score where a
    model scored them, else by the search's score, with what a person reads first and what a model needs to cut
    each observation's snippet."""
    keep = (events["level"] >= filter_level) | (events["level"] == WINDOW_LEVEL)
    kept = events[keep].sort_values(ranking_column(events), ascending=False, kind="stable")
    n_obs = len(cadence.headers)
    first_on = cadence.on.index(True)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, len(kept) + 1),
            "cadence": cadence.name,
            **({"model_score": kept["model_score"].to_numpy()} if "model_score" in kept else {}),
            "score": kept["score"].to_numpy(),
            "level": kept["level"].to_numpy(),
            "frequency": kept[f"freq_obs{first_on}"].to_numpy(),
            "drift_rate": kept["DriftRate"].to_numpy(),
            "in_n_ons": kept["in_n_ons"].to_numpy(),
            "off_hits": kept["RFI_in_range"].to_numpy(),
        }
    )
    for k in range(n_obs):
        table[f"snr_obs{k}"] = kept[f"snr_obs{k}"].to_numpy()
    table["chunk"] = kept["chunk"].to_numpy()
    table["chunk_start"] = [bounds[c][0] for c in kept["chunk"]]
    table["chunk_channels"] = [bounds[c][1] - bounds[c][0] for c in kept["chunk"]]
    for k in range(n_obs):
        table[f"channel_obs{k}"] = kept[f"channel_obs{k}"].to_numpy()
    table["drift_channels"] = kept["drift_channels"].to_numpy()
    table["width"] = kept["width"].to_numpy()
    table["event"] = kept["Hit_ID"].to_numpy()
    return table


def ranking_column(table: pd.DataFrame) -> str:
    """What candidates are ranked by: the model's score when a model scored them, else the search's."""
    return "model_score" if "model_score" in table else "score"


def chunk_paths(folder: Path, chunk: int) -> tuple[Path, Path, Path]:
    """A chunk's hits, events and done marker (written last) under the cadence folder."""
    base = folder / CHUNK_FOLDER / f"{chunk:05d}"
    return base.with_suffix(".hits.csv"), base.with_suffix(".events.csv"), base.with_suffix(".done.json")


def snippet_path(folder: Path, chunk: int) -> Path:
    """A chunk's event snippets for a model, (events, observations, rows, channels) float16, in the events' order."""
    return folder / CHUNK_FOLDER / f"{chunk:05d}.snippets.npy"


def model_score_path(folder: Path, chunk: int) -> Path:
    """A model's logits for a chunk's events (one row each, in the events' order)."""
    return folder / CHUNK_FOLDER / f"{chunk:05d}.model.csv"


def read_chunks(folder: Path, bounds, with_model: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The chunks' hits, events (with `with_model`, their model logits as `model_logit`) and summaries."""
    hits, events, summaries = [], [], []
    for chunk in range(len(bounds)):
        hits_path, events_path, done_path = chunk_paths(folder, chunk)
        hits.append(pd.read_csv(hits_path))
        chunk_events = pd.read_csv(events_path)
        if with_model:
            logits = pd.read_csv(model_score_path(folder, chunk))["model_logit"].to_numpy()
            if len(logits) != len(chunk_events):
                raise ValueError(
                    f"{model_score_path(folder, chunk)}: {len(logits)} scores for {len(chunk_events)} events"
                )
            chunk_events["model_logit"] = logits
        events.append(chunk_events)
        summaries.append(json.loads(done_path.read_text()))
    return pd.concat(hits, ignore_index=True), pd.concat(events, ignore_index=True), summaries


def write_cadence_outputs(folder: Path, cadence, settings, bounds, model: dict | None = None) -> None:
    """Every output of a cadence whose chunks are all done (rewritten from the chunk files each time). With
    `model` (what scored the events: its description and threshold), every chunk has its model scores, the
    candidates are ranked by them and the report says how many pass the threshold."""
    raw_hits, raw_events, summaries = read_chunks(folder, bounds, with_model=model is not None)
    windows_scored = int((raw_events["level"] == WINDOW_LEVEL).sum())
    if model is not None:
        raw_events["model_score"] = 1.0 / (1.0 + np.exp(-raw_events["model_logit"].to_numpy(float)))
        # windows (scan.py --windows, thousands per coarse channel) are kept where the model passes them
        below = (raw_events["level"] == WINDOW_LEVEL) & (raw_events["model_score"] < model["threshold"])
        raw_events = raw_events[~below].reset_index(drop=True)
    hits = hit_table(raw_hits, cadence, bounds)
    (folder / "hits").mkdir(exist_ok=True)
    for k, header in enumerate(cadence.headers):
        write_dat(folder / "hits" / f"{header.path.stem}.dat", header, hits[hits["obs"] == k], settings.max_drift)
    write_csv_atomically(hits, folder / "hits.csv")
    events = event_table(raw_events, raw_hits, cadence, bounds, settings.max_drift)
    write_csv_atomically(events, folder / "events.csv")
    candidates = candidate_table(events, cadence, bounds, settings.filter_level)
    write_csv_atomically(candidates, folder / "candidates.csv")
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    write_atomically(plots / "overview.png", lambda tmp: plot_overview(tmp, hits, events, cadence))
    for stale in plots.glob("candidate_*.png"):  # of an earlier assembly, ranked otherwise
        stale.unlink()
    for candidate in candidates.head(settings.plot_top).itertuples(index=False):
        path = plots / f"candidate_{candidate.rank:03d}.png"
        write_atomically(path, lambda tmp, c=candidate: plot_candidate(tmp, c, cadence))
    report = cadence_report(cadence, settings, hits, events, candidates, summaries, model, windows_scored)
    write_text_atomically(folder / "report.md", report)


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in table.itertuples(index=False))


def model_lines(model: dict | None, candidates: pd.DataFrame) -> list[str]:
    """What the model did, and how many candidates a person must review at its threshold."""
    if model is None:
        return []
    passing = int((candidates["model_score"] >= model["threshold"]).sum())
    return [
        f"Model: {model['description']}. Candidates are ranked by its score (probability of a needle). At the "
        f"threshold {model['threshold']:g}: **{passing}** of {len(candidates)} to review.",
        "",
    ]


def cadence_report(
    cadence, settings, hits, events, candidates, summaries, model: dict | None = None, windows_scored: int = 0
) -> str:
    seconds = [s["seconds"] for s in summaries]
    files = pd.DataFrame(
        {
            "obs": range(len(cadence.headers)),
            "role": ["ON" if on else "OFF" for on in cadence.on],
            "file": [h.path.name for h in cadence.headers],
            "source": [h.source_name for h in cadence.headers],
            "MJD start": [f"{h.tstart:.6f}" for h in cadence.headers],
            "hits": [int((hits["obs"] == k).sum()) for k in range(len(cadence.headers))],
        }
    )
    levels = {level: int((events["level"] == level).sum()) for level in (1, 2, 3)}
    top = candidates.head(TOP_CANDIDATES_IN_REPORT)
    shown = pd.DataFrame(
        {
            "rank": top["rank"],
            **({"model score": top["model_score"].map("{:.3f}".format)} if model is not None else {}),
            "score": top["score"].map("{:.1f}".format),
            "level": top["level"],
            "frequency (MHz)": top["frequency"].map("{:.6f}".format),
            "drift (Hz/s)": top["drift_rate"].map("{:+.4f}".format),
            "SNR per observation": [
                " / ".join(f"{row[f'snr_obs{k}']:.1f}" for k in range(len(cadence.headers)))
                for _, row in top.iterrows()
            ],
            "plot": [f"[png](plots/candidate_{r:03d}.png)" if r <= settings.plot_top else "" for r in top["rank"]],
        }
    )
    first = cadence.headers[0]
    lines = [
        f"# Scan of cadence {cadence.name} (target {cadence.target}, pattern {cadence.pattern()})",
        "",
        f"{first.nchans:,} channels of {first.df_hz:.3f} Hz x {first.n_rows} rows of {first.tsamp:.2f} s; "
        f"{len(summaries)} coarse channel(s) of {first.nchans // len(summaries):,} channels; "
        f"max drift {settings.max_drift:g} Hz/s, hit SNR >= {settings.snr:g}.",
        "",
        _markdown(files),
        f"Events: level 1 (hits): {levels[1]}, level 2 (in an ON, no OFF): {levels[2]}, "
        f"level 3 (in every ON, no OFF): {levels[3]}. "
        + (
            f"Windows of the ON bands with no hit (level 0): {windows_scored} scored by the model, "
            f"{int((events['level'] == WINDOW_LEVEL).sum())} at or above its threshold (candidates too). "
            if settings.windows
            else ""
        )
        + f"Candidates (level >= {settings.filter_level}): **{len(candidates)}**"
        + (
            ", ranked by the model's score."
            if model
            else " to review, ranked by score (sqrt(#ON) x (mean ON SNR - strongest OFF SNR))."
        ),
        "",
        *model_lines(model, candidates),
        _markdown(shown) if len(shown) else "No candidate passed the filter.",
        f"Search time: {sum(seconds):.1f} s in all, {np.mean(seconds):.2f} s per coarse channel for the "
        f"{len(cadence.headers)} observations. Overview: [plots/overview.png](plots/overview.png). Files: hits/*.dat "
        "(turbo_seti format), hits.csv, events.csv, candidates.csv.",
        "",
    ]
    return "\n".join(lines)


def write_catalog_outputs(out: Path, folders: list[Path]) -> None:
    """All cadences' candidates in one ranked table, and a summary report."""
    tables, rows = [], []
    for folder in folders:
        candidates = pd.read_csv(folder / "candidates.csv")
        tables.append(candidates)
        summaries = [json.loads(p.read_text()) for p in sorted((folder / CHUNK_FOLDER).glob("*.done.json"))]
        rows.append(
            {
                "cadence": f"[{folder.name}]({folder.name}/report.md)",
                "hits": sum(s["hits"] for s in summaries),
                "candidates": len(candidates),
                "best score": f"{candidates[ranking_column(candidates)].max():.3g}" if len(candidates) else "",
                "seconds": f"{sum(s['seconds'] for s in summaries):.1f}",
            }
        )
    combined = pd.concat(tables, ignore_index=True)
    combined = combined.sort_values(ranking_column(combined), ascending=False, kind="stable").reset_index(drop=True)
    combined.insert(0, "catalog_rank", np.arange(1, len(combined) + 1))
    write_csv_atomically(combined, out / "candidates.csv")
    text = (
        f"# Scan of {len(folders)} cadence(s)\n\n{_markdown(pd.DataFrame(rows))}\n"
        f"{len(combined)} candidates in all (candidates.csv).\n"
    )
    write_text_atomically(out / "report.md", text)
