"""CAM++ speaker embedding as a pyannote.audio embedding model.

The network follows 3D-Speaker's CAM++ (Apache-2.0,
https://github.com/modelscope/3D-Speaker, ``speakerlab/models/campplus``);
module names match that implementation so its published state dict
(``campplus_cn_en_common.pt``, 192-dim) loads unchanged.

:class:`CamPlusPlusEmbedding` is a :class:`pyannote.audio.Model`, so pyannote's
``SpeakerDiarization`` uses it through its ordinary embedding path: it receives
a 10 s chunk plus a frame mask per local speaker and returns one embedding per
(chunk, speaker). Masks with too little speech return NaN rows without running
the network; pyannote's clustering drops those rows anyway (it only clusters
speakers active for >= 20 % of a chunk), so this skips work without changing
the result.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from torch import nn


class _BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """2-D convolutional front end over (mel, time)."""

    def __init__(self, m_channels: int = 32, feat_dim: int = 80) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(
            _BasicResBlock(m_channels, m_channels, stride=2),
            _BasicResBlock(m_channels, m_channels, stride=1),
        )
        self.layer2 = nn.Sequential(
            _BasicResBlock(m_channels, m_channels, stride=2),
            _BasicResBlock(m_channels, m_channels, stride=1),
        )
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        b, c, f, t = out.shape
        return out.reshape(b, c * f, t)


def _bn_relu(channels: int, affine: bool = True) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("batchnorm", nn.BatchNorm1d(channels, affine=affine))
    seq.add_module("relu", nn.ReLU(inplace=True))
    return seq


class _TDNNLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        pad = (kernel - 1) // 2
        self.linear = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=False)
        self.nonlinear = _bn_relu(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by utterance and 100-frame segment context."""

    def __init__(self, bn_ch: int, out_ch: int, kernel: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(bn_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_ch, bn_ch // 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_ch // 2, out_ch, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_local(x)
        seg = F.avg_pool1d(x, kernel_size=100, stride=100, ceil_mode=True)
        seg = seg.repeat_interleave(100, dim=-1)[..., : x.shape[-1]]
        context = x.mean(-1, keepdim=True) + seg
        return y * self.sigmoid(self.linear2(self.relu(self.linear1(context))))


class _CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, bn_ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(in_ch)
        self.linear1 = nn.Conv1d(in_ch, bn_ch, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_ch)
        pad = (kernel - 1) // 2 * dilation
        self.cam_layer = _CAMLayer(bn_ch, out_ch, kernel, pad, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(self, num_layers: int, in_ch: int, out_ch: int, bn_ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _CAMDenseTDNNLayer(in_ch + i * out_ch, out_ch, bn_ch, kernel, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TransitLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(in_ch)
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _StatsPool(nn.Module):
    # Positive dims (input is (batch, channels, frames)): torch's ONNX exporter wrote
    # ``cat(dim=-1)`` here as axis 2 of a rank-2 tensor, a graph onnxruntime refuses.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=2)
        std = x.std(dim=2, unbiased=True) if x.size(2) > 1 else torch.full_like(mean, 1e-2)
        return torch.cat([mean, std], dim=1)


class _DenseLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(out_ch, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """CAM++ network: (batch, frames, 80 fbank) -> (batch, embedding_size)."""

    def __init__(self, feat_dim: int = 80, embedding_size: int = 192) -> None:
        super().__init__()
        growth, bn_size, init_ch = 32, 4, 128
        self.head = _FCM(feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([("tdnn", _TDNNLayer(channels, init_ch, 5, stride=2))]))
        channels = init_ch
        for i, (num_layers, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            block = _CAMDenseTDNNBlock(num_layers, channels, growth, bn_size * growth, kernel, dilation)
            self.xvector.add_module(f"block{i + 1}", block)
            channels += num_layers * growth
            self.xvector.add_module(f"transit{i + 1}", _TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _DenseLayer(channels * 2, embedding_size))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Embed mean-normalised fbank features of shape (batch, frames, feat_dim)."""
        return self.xvector(self.head(feats.permute(0, 2, 1)))


FRAME_SHIFT_S = 0.01
#: Fbank frames of ``n`` samples at 16 kHz: 25 ms windows every 10 ms, edges snipped.
WINDOW_SAMPLES, HOP_SAMPLES = 400, 160


def fbank(waveform: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """3D-Speaker's front end: Kaldi fbank, 80 bins, no dither, on [-1, 1] samples.

    ``waveform`` is (1, samples); returns (frames, 80), frame ``i`` covering
    samples ``[160 i, 160 i + 400)``.
    """
    return kaldi.fbank(
        waveform,
        num_mel_bins=80,
        sample_frequency=sample_rate,
        frame_shift=FRAME_SHIFT_S * 1000,
        dither=0.0,
    )


class CamPlusPlusEmbedding(Model):
    """CAM++ behind pyannote's embedding-model interface (``forward(waveforms, weights)``).

    ``min_speech_ratio``: a mask with less speech than this share of the chunk
    yields a NaN row instead of an embedding (see module docstring).
    """

    #: Every network call sees this many frames (10 s, one segmentation chunk).
    FIXED_FRAMES = 1000

    def __init__(
        self,
        sample_rate: int = 16000,
        num_channels: int = 1,
        embedding_size: int = 192,
        min_speech_ratio: float = 0.2,
        min_frames: int = 50,
    ) -> None:
        super().__init__(sample_rate=sample_rate, num_channels=num_channels)
        self.save_hyperparameters("embedding_size", "min_speech_ratio", "min_frames")
        self.embedding_size = embedding_size
        self.min_speech_ratio = min_speech_ratio
        self.min_frames = min_frames
        self.sample_rate = sample_rate
        self.campplus = CAMPPlus(feat_dim=80, embedding_size=embedding_size)

    @classmethod
    def from_state_dict_file(cls, path: Path) -> CamPlusPlusEmbedding:
        """Load 3D-Speaker's published state dict (``campplus_*.pt``).

        Not warmed up (:meth:`warm_up`): the default pipeline never runs this
        network's ``forward`` on CPU (its capped embedding step runs CAM++ on
        onnxruntime, or this network on CUDA), and the warm-up pass cost every
        ``flowbot transcribe`` ~0.4 CPU s of its diarizer load.
        """
        model = cls()
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.campplus.load_state_dict(state, strict=True)
        model.eval()
        return model

    @property
    def dimension(self) -> int:
        """Embedding size."""
        return self.embedding_size

    def _fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        return fbank(waveform, self.sample_rate)

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """(batch, 1, samples) [+ (batch, frames) masks] -> (batch, dimension); NaN = no speech."""
        out = torch.full((waveforms.shape[0], self.dimension), float("nan"), device=waveforms.device)
        for b in range(waveforms.shape[0]):
            feats = self._fbank(waveforms[b, :1].float())
            if weights is not None:
                mask = weights[b].float()
                if mask.sum() < self.min_speech_ratio * mask.numel():
                    continue
                # Resample the segmentation-rate mask to the 100 Hz fbank frames.
                frame_mask = F.interpolate(mask[None, None], size=feats.shape[0], mode="nearest")
                feats = feats[frame_mask[0, 0] > 0.5]
            if feats.shape[0] < self.min_frames:
                continue
            feats = feats - feats.mean(dim=0, keepdim=True)
            out[b] = self.campplus(self._tile(feats)[None])[0]
        return out

    def _tile(self, feats: torch.Tensor) -> torch.Tensor:
        """Repeat the frames cyclically up to a multiple of ``FIXED_FRAMES``.

        oneDNN (torch's CPU convolution backend) builds new kernels for every
        input length it has not seen, which made variable-length calls ~20x
        slower than fixed-length ones on 2 cores (bench/diarization.py). Cycling
        the speaker's own frames keeps the statistics the network pools (mean,
        std, segment context) while every call has the same shape.
        """
        n = feats.shape[0]
        target = self.FIXED_FRAMES * max(1, math.ceil(n / self.FIXED_FRAMES))
        if n == target:
            return feats
        return feats[torch.arange(target, device=feats.device) % n]

    def warm_up(self) -> None:
        """Build the CPU kernels for the fixed input shape once (before timing :meth:`forward` on CPU)."""
        with torch.inference_mode():
            self.campplus(torch.zeros(1, self.FIXED_FRAMES, 80))
