"""The CA-MTCR network: per-date optical and SAR encoding, fusion, change-aware temporal fusion, decoding."""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import MultiModalFusion, sar_change_map, optical_change_map, ChangeAwareTemporalFusion, CAMTCRDecoder
from .layers import DOWNSAMPLING, RegionSelectiveOpticalEncoder
from .sar import SAREncoder, SARNoise2NoiseVQVAE

#: Parameter count reported by the paper (Table 1) for 13 S2 + 2 S1 bands.
PAPER_PARAMETERS = 7.45e6


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
class CAMTCR(nn.Module):
    """Change-aware multi-temporal cloud removal (S2 + S1 time series -> cloud-free target S2).

    Args:
        s2_bands: Sentinel-2 bands per date (13 on SEN12MS-CR-TS).
        s1_bands: Sentinel-1 bands per date (VV, VH); 0 for the optical-only variant.
        out_bands: predicted S2 bands (default ``s2_bands``).
        optical_dim, depth, heads, mlp_ratio: Transformer width, number of blocks (9), heads,
            feed-forward ratio of the optical encoder.
        sar_dim: SAR encoder width (= VQ-VAE codebook dimension).
        fused_dim: width after the multi-modal fusion block (a multiple of ``ltae_heads``).
        attention_channels, ltae_heads, ltae_key_dim, ltae_model_dim: change-aware fusion.
        decoder_blocks, decoder_widths: decoder MBConv blocks and upsampling widths.
        expansion: MBConv expansion factor.
        region_selective: soft masks in the optical encoder (False = the "w/o RegS" ablation).
        change_aware: change maps in the temporal fusion (False = the "w/o CA" ablation).
        optical_change: change map of the optical-only variant, ``"similarity"`` or ``"uniform"``.
    """

    model_name = "ca_mtcr"
    size_multiple = DOWNSAMPLING

    def __init__(
        self,
        s2_bands: int = 13,
        s1_bands: int = 2,
        out_bands: Optional[int] = None,
        optical_dim: int = 192,
        depth: int = 9,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        sar_dim: int = 128,
        fused_dim: int = 192,
        attention_channels: int = 160,
        ltae_heads: int = 16,
        ltae_key_dim: int = 4,
        ltae_model_dim: int = 256,
        decoder_blocks: int = 2,
        decoder_widths: Sequence[int] = (80, 40),
        expansion: int = 4,
        region_selective: bool = True,
        change_aware: bool = True,
        optical_change: str = "similarity",
    ) -> None:
        super().__init__()
        if s2_bands < 1:
            raise ValueError(f"{self.model_name}: s2_bands must be >= 1, got {s2_bands}")
        if s1_bands < 0:
            raise ValueError(f"{self.model_name}: s1_bands must be >= 0, got {s1_bands}")
        if optical_change not in ("similarity", "uniform"):
            raise ValueError(
                f"{self.model_name}: optical_change must be 'similarity' or 'uniform', got {optical_change!r}"
            )
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = out_bands or s2_bands
        self.change_aware = change_aware
        self.optical_change = optical_change
        self.optical_encoder = RegionSelectiveOpticalEncoder(
            s2_bands, optical_dim, depth, heads, mlp_ratio, region_selective=region_selective
        )
        self.sar_encoder = SAREncoder(s1_bands, sar_dim, expansion) if s1_bands else None
        self.fusion = MultiModalFusion(optical_dim, sar_dim if s1_bands else 0, fused_dim, expansion)
        self.temporal_fusion = ChangeAwareTemporalFusion(
            fused_dim, attention_channels, ltae_heads, ltae_key_dim, ltae_model_dim
        )
        self.decoder = CAMTCRDecoder(fused_dim, self.out_bands, decoder_blocks, decoder_widths, expansion)

    # -- helpers ----------------------------------------------------------------------------
    def parameter_groups(self, lr: float = 1e-4, sar_lr: float = 1e-5) -> List[dict]:
        """Optimiser groups of the paper: everything at ``lr``, the pretrained SAR encoder at ``sar_lr``."""
        sar = list(self.sar_encoder.parameters()) if self.sar_encoder is not None else []
        sar_ids = {id(p) for p in sar}
        groups = [{"params": [p for p in self.parameters() if id(p) not in sar_ids], "lr": lr}]
        if sar:
            groups.append({"params": sar, "lr": sar_lr})
        return groups

    def load_sar_encoder(self, source: Union[nn.Module, Mapping[str, torch.Tensor]]) -> None:
        """Initialise the SAR encoder from a pretrained :class:`SARNoise2NoiseVQVAE`, a
        :class:`SAREncoder`, or a state dict of either (VQ-VAE keys start with ``encoder.``)."""
        if self.sar_encoder is None:
            raise ValueError(f"{self.model_name}: this model was built without SAR (s1_bands=0)")
        if isinstance(source, SARNoise2NoiseVQVAE):
            source = source.encoder
        state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
        if any(k.startswith("encoder.") for k in state):
            state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        self.sar_encoder.load_state_dict(state)

    def _check(self, s2, s1, mask) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        name = self.model_name
        if s2 is None or s2.ndim != 5 or s2.shape[2] != self.s2_bands:
            shape = None if s2 is None else tuple(s2.shape)
            raise ValueError(f"{name}: s2 has shape {shape}; expected (N, T, {self.s2_bands}, H, W)")
        n, t, _, h, w = s2.shape
        if t < 1 or h % DOWNSAMPLING or w % DOWNSAMPLING:
            raise ValueError(f"{name}: s2 is {h}x{w} px with T={t}; need T >= 1 and H, W multiples of {DOWNSAMPLING}")
        if self.s1_bands:
            if s1 is None:
                raise ValueError(f"{name}: input 's1' is missing; expected (N, T, {self.s1_bands}, H, W)")
            if tuple(s1.shape) != (n, t, self.s1_bands, h, w):
                raise ValueError(f"{name}: s1 has shape {tuple(s1.shape)}; expected {(n, t, self.s1_bands, h, w)}")
        else:
            s1 = None
        if mask is None:
            mask = s2.new_zeros(n, t, 1, h, w)
        else:
            mask = torch.as_tensor(mask, device=s2.device).to(s2.dtype)
            if mask.ndim == 4:
                mask = mask.unsqueeze(2)
            if tuple(mask.shape) != (n, t, 1, h, w):
                raise ValueError(f"{name}: mask has shape {tuple(mask.shape)}; expected {(n, t, 1, h, w)}")
            mask = mask.clamp(0.0, 1.0)
        return s2, s1, mask

    def analyse(self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        """The prediction and the intermediate maps, as a dict.

        ``prediction`` (N, C, H, W); ``change`` (N, T, 1, H/4, W/4) change maps (1 = unchanged);
        ``weights`` (N, T, heads, H/4, W/4) temporal attention; ``region_masks`` (N, T, L, 1,
        H/4, W/4) soft masks of the optical encoder (absent without region selection).
        """
        s2, s1, mask = self._check(s2, s1, mask)
        n, t = s2.shape[:2]
        optical, soft = self.optical_encoder(s2.flatten(0, 1), mask.flatten(0, 1))
        grid = optical.shape[-2:]
        if self.sar_encoder is not None:
            sar = self.sar_encoder(s1.flatten(0, 1))
            fused = self.fusion(optical, sar)
            change = sar_change_map(sar.view(n, t, -1, *grid))
        else:
            fused = self.fusion(optical, None)
            if self.optical_change == "similarity":
                clear = 1.0 - F.avg_pool2d(mask.flatten(0, 1), DOWNSAMPLING).view(n, t, 1, *grid)
                change = optical_change_map(optical.view(n, t, -1, *grid), clear)
            else:
                change = optical.new_ones(n, t, 1, *grid)
        if not self.change_aware:
            change = torch.ones_like(change)
        combined, weights = self.temporal_fusion(fused.view(n, t, -1, *grid), change)
        out = {"prediction": self.decoder(combined), "change": change, "weights": weights}
        if soft:
            out["region_masks"] = torch.stack(soft, dim=1).view(n, t, len(soft), 1, *grid)
        return out

    def forward(
        self,
        s2: torch.Tensor,
        s1: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        *,
        terrain: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Cloud-free S2 at the last date.

        Args:
            s2: Sentinel-2 series (N, T, s2_bands, H, W), "unit" scaling; date T-1 is the target.
            s1: Sentinel-1 series (N, T, s1_bands, H, W); required when ``s1_bands > 0``.
            mask: cloud probability / mask (N, T, 1, H, W) or (N, T, H, W), 1 = cloud; None =
                all clear.
            terrain: ignored (accepted for the uniform calling convention).
        """
        return self.analyse(s2, s1, mask)["prediction"]
