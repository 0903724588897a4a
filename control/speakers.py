"""End-of-session speaker reconciliation: one consistent cast for the whole meeting.

Live, each ~30 s window is diarized alone and its speakers are mapped to session
speakers one window at a time (``processor.speakers``), so a voice heard in a new
acoustic context (another window, a short turn, a telephone band) can found a
second session speaker. Once every window is committed, this module clusters all
of the session's window speakers together, from the embeddings the processor
stored with each window (:attr:`contracts.segments.WindowRecord.speakers`), the
way whole-file pyannote clusters its chunks: one agglomerative clustering
(average linkage on cosine distance) over every window speaker with enough speech
to have a trustworthy embedding; the shorter ones then join the closest cluster.

Each cluster keeps the live label that holds most of its speech, so a meeting the
registry got right keeps its labels and a viewer sees each label change at most
once. :func:`reconcile` only decides; the store applies the result in one
transaction (:meth:`stores.base.TranscriptStore.relabel_speakers`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.segments import SpeakerRelabel, WindowRecord, WindowStatus


@dataclass(frozen=True)
class ReconcileParams:
    """Knobs of :func:`reconcile`, measured on the real-speech dev set (docs/diarization.md).

    On the stored window speakers of sample, concat, squeezed and returning,
    one voice in two windows sat 0.05-0.45 apart (CAM++, window means) and two
    voices 0.37-1.1 (0.37-0.45 only where a window speaker mixed two voices);
    starting from the live labels and merging under 0.4 fixed concat's split
    telephone voice (cpWER-WER 22.9 -> 19.9, DER 22.9 -> 20.1 %) and changed
    nothing on the three others; 0.45 merged two voices of the returning meeting.
    """

    #: Average-linkage cosine distance under which two clusters are one voice.
    threshold: float = 0.4
    #: A window speaker with less speech than this does not shape the clusters (its
    #: embedding is noisy); it joins the closest cluster afterwards.
    min_seconds: float = 1.0
    #: Two speakers of one window are one voice only when closer than this: the
    #: window's own clustering said they differ, unless it split one voice (a
    #: telephone voice split in two sat 0.35 apart; two voices of one window >= 0.49).
    split_distance: float = 0.4
    #: Start from the live labels (each one cluster) and only merge: the registry
    #: already matched each window speaker to a centroid of many windows, which
    #: separated voices better than pairwise distances of single windows did.
    keep_live: bool = True


@dataclass(frozen=True)
class VoiceItem:
    """One window speaker: the unit the global clustering works on."""

    window_index: int
    label: str
    seconds: float
    embedding: np.ndarray | None  # unit norm


def voice_items(windows: Sequence[WindowRecord]) -> list[VoiceItem]:
    """The window speakers of a session's done windows, embeddings as unit-norm arrays."""
    items = []
    for window in windows:
        if window.status != WindowStatus.DONE:
            continue
        for spk in window.speakers:
            items.append(VoiceItem(window.window_index, spk.label, spk.seconds, unit(spk.embedding)))
    return items


def unit(vec: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    """Unit-norm float64 copy, or None for a missing, non-finite or all-zero embedding."""
    if vec is None:
        return None
    arr = np.asarray(vec, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 1e-8 else None


def average_linkage(
    embeddings: np.ndarray,
    weights: np.ndarray,
    threshold: float,
    cannot_link: np.ndarray | None = None,
    start: Sequence[int] | None = None,
) -> list[int]:
    """Agglomerative clustering, average linkage on cosine distance, stopped at ``threshold``.

    ``embeddings`` are unit-norm rows; ``weights`` (seconds of speech) weight the
    average, so a long turn counts for more than a short one. ``cannot_link``
    (boolean, n x n) marks pairs that may never share a cluster: their distance is
    infinite, and so stays the distance of any two clusters holding them.
    ``start`` (a group number per row) merges each group before clustering starts.
    Returns a cluster number per row (0, 1, ... in order of first row).
    """
    n = len(embeddings)
    if n == 0:
        return []
    dist = 1.0 - embeddings @ embeddings.T
    if cannot_link is not None:
        dist[cannot_link] = np.inf
    np.fill_diagonal(dist, np.inf)
    size = np.maximum(weights.astype(np.float64), 1e-3)
    alive = np.ones(n, bool)
    members: list[list[int]] = [[i] for i in range(n)]

    def merge(a: int, b: int) -> None:
        # Lance-Williams update for weighted average linkage.
        merged = (size[a] * dist[a] + size[b] * dist[b]) / (size[a] + size[b])
        dist[a, :] = merged
        dist[:, a] = merged
        dist[a, a] = np.inf
        size[a] += size[b]
        alive[b] = False
        members[a] += members[b]
        members[b] = []

    if start is not None:
        first: dict[int, int] = {}
        for i, start_group in enumerate(start):
            if start_group in first:
                merge(first[start_group], i)
            else:
                first[start_group] = i
    while alive.sum() > 1:
        masked = np.where(alive[:, None] & alive[None, :], dist, np.inf)
        a, b = divmod(int(np.argmin(masked)), n)
        if masked[a, b] >= threshold:
            break
        merge(a, b)
    labels = [0] * n
    for number, group in enumerate(sorted((g for g in members if g), key=min)):
        for i in group:
            labels[i] = number
    return labels


def cluster_voices(items: Sequence[VoiceItem], params: ReconcileParams) -> list[int]:
    """A cluster number for every window speaker: one global clustering of the session.

    Window speakers with at least ``params.min_seconds`` and an embedding are
    clustered (:func:`average_linkage`); each other one joins the cluster whose
    centroid is closest to its embedding, or without one the cluster holding most
    speech of its live label. With nothing to cluster, each live label is a cluster.
    """
    anchors = [i for i, it in enumerate(items) if it.embedding is not None and it.seconds >= params.min_seconds]
    out = [-1] * len(items)
    if not anchors:
        labels = sorted({it.label for it in items})
        return [labels.index(it.label) for it in items]
    emb = np.stack([items[i].embedding for i in anchors])  # type: ignore[misc]
    weights = np.array([items[i].seconds for i in anchors])
    windows = np.array([items[i].window_index for i in anchors])
    apart = (windows[:, None] == windows[None, :]) & (1.0 - emb @ emb.T >= params.split_distance)
    live = sorted({items[i].label for i in anchors})
    start = [live.index(items[i].label) for i in anchors] if params.keep_live else None
    for i, k in zip(anchors, average_linkage(emb, weights, params.threshold, apart, start), strict=True):
        out[i] = k
    clusters = sorted(set(out) - {-1})
    centroids = np.stack([_centroid([items[i] for i in anchors if out[i] == k]) for k in clusters])
    # Speech of each live label in each cluster: where a short speaker without an embedding goes.
    by_label: dict[str, dict[int, float]] = {}
    for i in anchors:
        share = by_label.setdefault(items[i].label, {})
        share[out[i]] = share.get(out[i], 0.0) + items[i].seconds
    for i, it in enumerate(items):
        if out[i] != -1:
            continue
        if it.embedding is not None:
            out[i] = clusters[int(np.argmax(centroids @ it.embedding))]
        elif it.label in by_label:
            share = by_label[it.label]
            out[i] = max(share, key=lambda k: (share[k], -k))
        else:
            out[i] = max(clusters) + 1 + sorted({x.label for x in items}).index(it.label)
    return out


def _centroid(items: Sequence[VoiceItem]) -> np.ndarray:
    """Unit-norm speech-weighted mean of window speakers that all have an embedding."""
    mean = unit(np.sum([it.seconds * it.embedding for it in items if it.embedding is not None], axis=0))
    return mean if mean is not None else np.asarray(items[0].embedding)


def final_labels(items: Sequence[VoiceItem], clusters: Sequence[int]) -> dict[int, str]:
    """A session label per cluster: the live label holding most of its speech, if still free.

    Clusters are served by speech, largest first, so the main voices keep their
    live labels; a cluster whose live labels are all taken gets the next unused ``S<n>``.
    """
    speech: dict[int, dict[str, float]] = {}
    for it, k in zip(items, clusters, strict=True):
        share = speech.setdefault(k, {})
        share[it.label] = share.get(it.label, 0.0) + max(it.seconds, 1e-3)
    used: set[str] = set()
    out: dict[int, str] = {}
    for k in sorted(speech, key=lambda c: (-sum(speech[c].values()), c)):
        for label, _ in sorted(speech[k].items(), key=lambda kv: (-kv[1], _label_order(kv[0]))):
            if label not in used:
                out[k] = label
                used.add(label)
                break
    next_n = max((n for n, _ in map(_label_order, {it.label for it in items}) if n < 10**9), default=0) + 1
    for k in sorted(speech):
        if k not in out:
            while f"S{next_n}" in used:
                next_n += 1
            out[k] = f"S{next_n}"
            used.add(out[k])
    return out


def _label_order(label: str) -> tuple[int, str]:
    """``S12`` -> (12, 'S12'); other labels after every ``S<n>``."""
    if label.startswith("S") and label[1:].isdigit():
        return (int(label[1:]), label)
    return (10**9, label)


def reconcile(
    windows: Sequence[WindowRecord], params: ReconcileParams | None = None, *, now: float | None = None
) -> SpeakerRelabel:
    """Decide the session's final cast from its windows' stored speakers (see the module docstring)."""
    params = params or ReconcileParams()
    items = voice_items(windows)
    before = tuple(sorted({it.label for it in items}, key=_label_order))
    if not items:
        return SpeakerRelabel({}, before, before, time.time() if now is None else now)
    clusters = cluster_voices(items, params)
    names = final_labels(items, clusters)
    changes: dict[int, dict[str, str]] = {}
    for it, k in zip(items, clusters, strict=True):
        if names[k] != it.label:
            changes.setdefault(it.window_index, {})[it.label] = names[k]
    after = tuple(sorted(set(names.values()), key=_label_order))
    return SpeakerRelabel(changes, before, after, time.time() if now is None else now)
