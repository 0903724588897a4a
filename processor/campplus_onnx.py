"""CAM++ on onnxruntime: exported at install time from the pinned PyTorch weights.

Why: on 2 CPU cores onnxruntime runs CAM++ on inputs of any length at a cost
proportional to the length, while PyTorch's oneDNN kernels pay a set-up cost for
each new input shape (``CamPlusPlusEmbedding`` used to tile every input to a
fixed 1000 frames to avoid it). Exact-length inputs are what make the capped
embedding step (:mod:`processor.capped_embeddings`) cheap.

:func:`export` runs once, from ``python -m artefacts fetch diarization-offline`` (:func:`derive`):
it traces the network (torch's TorchScript exporter, fixed opset, constant
folding: the same torch version writes the same bytes), records the sha256 of
the source weights in the model's metadata, checks onnxruntime's output against
PyTorch's on fixed probe inputs, and only then moves the file into place.
:class:`CamPlusPlusOnnx` refuses a file whose metadata names other weights.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artefacts import CAMPPLUS, DIARIZATION_OFFLINE, ArtefactError, fetch_command, sha256_of

if TYPE_CHECKING:
    import onnxruntime

ONNX_NAME = "campplus_cn_en_common.onnx"
OPSET = 17
#: Probe inputs (batch, frames) checked at export; 50 frames is the shortest input embedded.
PROBES = ((1, 50), (1, 300), (2, 1000))
#: Largest absolute difference from PyTorch tolerated on the probes (embedding values are O(1);
#: float32 reordering gives ~1e-5).
TOLERANCE = 1e-3
SOURCE_KEY = "flowbot.source_sha256"
FETCH = fetch_command(DIARIZATION_OFFLINE)


def derive(weights_dir: Path, *, check_only: bool = False) -> None:
    """The registry's derived-file step: ONNX beside the pinned weights, exported unless a good one is there.

    With ``check_only`` a missing or foreign file raises :class:`ArtefactError` instead.
    """
    try:
        CamPlusPlusOnnx(weights_dir / ONNX_NAME)
    except ArtefactError:
        if check_only:
            raise
        export(weights_dir)
        CamPlusPlusOnnx(weights_dir / ONNX_NAME)  # loads, and names the pinned source


def export(weights_dir: Path) -> Path:
    """Write ``weights_dir/ONNX_NAME`` from the CAM++ weights beside it; checked before it is moved in place."""
    import onnx
    import torch

    from processor.campplus import CamPlusPlusEmbedding

    source = weights_dir / CAMPPLUS.name
    digest = sha256_of(source)
    if digest != CAMPPLUS.sha256:
        raise ArtefactError(f"{source} has sha256 {digest}, expected {CAMPPLUS.sha256}")
    network = CamPlusPlusEmbedding.from_state_dict_file(source).campplus.eval()
    with tempfile.TemporaryDirectory(prefix="flowbot-onnx-", dir=weights_dir) as tmp:
        staged = Path(tmp) / ONNX_NAME
        # TorchScript exporter (``dynamo=False``): it needs only the onnx package, and with the
        # pinned torch it writes the same bytes every time (tests/diarization/test_campplus_onnx.py).
        # Its deprecation notice and the tracer's note on _StatsPool's constant branch are expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                (torch.zeros(1, 300, 80),),
                str(staged),
                input_names=["feats"],
                output_names=["embedding"],
                dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        model = onnx.load(str(staged))
        entry = model.metadata_props.add()
        entry.key, entry.value = SOURCE_KEY, digest
        onnx.save(model, str(staged))
        worst = _max_difference(staged, network)
        if not worst <= TOLERANCE:
            raise RuntimeError(f"exported CAM++ differs from PyTorch by {worst:.2e} (> {TOLERANCE:g}); not installed")
        staged.replace(weights_dir / ONNX_NAME)
    return weights_dir / ONNX_NAME


def _max_difference(path: Path, network: object) -> float:
    import torch

    session = _session(path, threads=1)
    generator = torch.Generator().manual_seed(13)
    worst = 0.0
    for batch, frames in PROBES:
        feats = torch.randn(batch, frames, 80, generator=generator)
        with torch.inference_mode():
            expected = network(feats).numpy()  # type: ignore[operator]
        got = session.run(None, {"feats": feats.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: on a busy 2-core machine spinning
    # cost ~30 % more CPU for the same embeddings (the OMP_WAIT_POLICY=PASSIVE of onnxruntime).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_sha256(path: Path) -> str:
    """Hex sha256 of an exported file (for logs and the determinism test)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CamPlusPlusOnnx:
    """CAM++ embeddings of mean-normalised fbank frames, on onnxruntime's CPU provider."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        if not path.is_file():
            raise ArtefactError(f"{path} is missing: run `{FETCH}` (exports CAM++ to ONNX at install time)")
        try:
            self.session = _session(path, threads)
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise ArtefactError(f"{path} cannot be loaded ({exc}); run `{FETCH}`") from exc
        source = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
        if source != CAMPPLUS.sha256:
            raise ArtefactError(
                f"{path} was not exported from the pinned CAM++ weights (metadata {source!r}); run `{FETCH}` again"
            )
        self.dimension = 192

    def embed(self, feats: np.ndarray) -> np.ndarray:
        """(batch, frames, 80) float32 -> (batch, 192)."""
        out: np.ndarray = self.session.run(None, {"feats": np.ascontiguousarray(feats, dtype=np.float32)})[0]
        return out
