#!/usr/bin/env python3
"""Export ImageBind (huge) to edgebind's model set: one ONNX encoder per modality, a concept bank
built with the text encoder, and a manifest with sha256s.

    # from the official checkpoint (downloaded by the user; CC BY-NC-SA 4.0, never shipped):
    python tools/export_imagebind.py --checkpoint imagebind_huge.pth --out models/imagebind
    # the same architecture with random weights (checks the tool without the checkpoint):
    python tools/export_imagebind.py --random-init --out /tmp/imagebind_random
    # and an int8 set beside it (models/imagebind-int8), checked against fp32 at start:
    python tools/export_imagebind.py --checkpoint imagebind_huge.pth --out models/imagebind \
        --quantize int8

Per modality the exported graph is ImageBind's `preprocessor -> trunk -> head -> postprocessor`
with the input/output contract of refdata/SPEC.md section 1 (input named after the modality,
output `embedding` float32 [B, 1024]; batch dynamic, audio clips dynamic, the audio clip
embeddings averaged inside the graph). Each file is checked against PyTorch with onnxruntime on
random inputs (max |delta| printed; the export fails above --tolerance).

The network is written here from ImageBind's published architecture (ViT encoders with
modality-specific stems, heads and postprocessors), with module and parameter names chosen so that
the official state dict (`modality_preprocessors.*`, `modality_trunks.*`, `modality_heads.*`,
`modality_postprocessors.*`) loads with strict=True. tools/check_imagebind_arch.py compares it
with the packaged upstream code (see models/README.md for what was and was not verified).

Needs: torch, numpy, onnx, onnxruntime, regex (text tokenizer); ftfy is used when installed.
The CLIP BPE vocabulary (`bpe_simple_vocab_16e6.txt.gz`, from OpenAI CLIP, MIT) is taken from
--bpe, $EDGEBIND_BPE, or an installed `open_clip` / `imagebind` package.
"""
import argparse
import gzip
import hashlib
import html
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENSOR_MODALITIES = ["audio", "depth", "thermal", "imu"]
EXPORTABLE = SENSOR_MODALITIES + ["text", "vision"]
OUT_DIM = 1024
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT, CONTEXT = 49406, 49407, 77
LICENCE_CHECKPOINT = ("CC-BY-NC-SA-4.0 (converted from Meta's ImageBind checkpoint by "
                      "tools/export_imagebind.py; non-commercial use only)")
LICENCE_RANDOM = ("CC0-1.0 (ImageBind architecture with RANDOM weights from tools/"
                  "export_imagebind.py --random-init; embeddings are meaningless)")


# --------------------------------------------------------------------------- architecture
# Sizes of imagebind_huge: (embed dim, blocks, heads, LayerNorm before the blocks, learned
# key/value bias token). The stems and heads below follow ImageBind's modality design.
TRUNKS = {
    "vision": (1280, 32, 16, True, False),
    "text": (1024, 24, 16, False, False),
    "audio": (768, 12, 12, False, True),
    "depth": (384, 12, 8, False, True),
    "thermal": (768, 12, 12, False, True),
    "imu": (512, 6, 8, False, True),
}
# Fixed output temperatures (text: learnable, initialised at 1/0.07, capped at 100; vision: none).
SCALES = {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
# ONNX input shape per modality (None = dynamic) and the symbolic names of the dynamic axes.
INPUTS = {
    "audio": ([None, None, 1, 128, 204], {0: "batch", 1: "clips"}),
    "depth": ([None, 1, 224, 224], {0: "batch"}),
    "thermal": ([None, 1, 224, 224], {0: "batch"}),
    "imu": ([None, 6, 2000], {0: "batch"}),
    "text": ([None, CONTEXT], {0: "batch"}),
    "vision": ([None, 3, 224, 224], {0: "batch"}),
}
LN_EPS = 1e-6  # every transformer and head LayerNorm; stem LayerNorms keep PyTorch's 1e-5
# Encoders whose fp32 weights exceed protobuf's 2 GB limit (vision ViT-H/14: 632 M parameters,
# 2.5 GB): their ONNX file holds the graph and `<m>.onnx.data` next to it holds every weight
# (ONNX external data, one file). The manifest records both sha256s.
EXTERNAL_DATA = {"vision"}


class SelfAttention(nn.Module):
    """Multi-head self-attention on [B, L, D] tokens. Parameters are laid out like
    torch.nn.MultiheadAttention (packed q/k/v projection, optional learned key and value appended
    as one extra token), which is what the checkpoint holds; written out with plain ops so the
    ONNX graph is the same for every exporter and provider."""

    def __init__(self, dim, heads, bias_kv):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)
            if mask is not None:
                mask = F.pad(mask, (0, 1))
        hd = d // self.heads

        def split(t):
            return t.reshape(b, -1, self.heads, hd).transpose(1, 2)  # [B, H, L, hd]

        q, k, v = split(q), split(k), split(v)
        att = torch.matmul(q * (hd ** -0.5), k.transpose(-2, -1))
        if mask is not None:
            att = att + mask
        y = torch.matmul(att.softmax(dim=-1), v)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    """Pre-norm transformer block. DropPath/Dropout are training-only: identity in eval."""

    def __init__(self, dim, heads, bias_kv):
        super().__init__()
        self.attn = SelfAttention(dim, heads, bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim)
        self.norm_2 = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm_1(x), mask)
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    def __init__(self, dim, blocks, heads, pre_ln, bias_kv):
        super().__init__()
        # Index 0 of a Sequential: the checkpoint key is `pre_transformer_layer.0.*`.
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS)) if pre_ln else None
        self.blocks = nn.ModuleList([Block(dim, heads, bias_kv) for _ in range(blocks)])

    def forward(self, x, mask=None):
        if self.pre_transformer_layer is not None:
            x = self.pre_transformer_layer(x)
        for blk in self.blocks:
            x = blk(x, mask)
        return x


class Stem(nn.Module):
    """Patch projection (`proj`), then an optional per-token LayerNorm (`norm_layer`)."""

    def __init__(self, proj, dim=None):
        super().__init__()
        self.proj = proj
        self.norm_layer = nn.LayerNorm(dim) if dim is not None else None

    def forward(self, x):
        x = self.proj(x)
        if x.ndim > 3:                      # conv output [B, D, (T,) H, W] -> [B, tokens, D]
            x = x.flatten(2).transpose(1, 2)
        return self.norm_layer(x) if self.norm_layer is not None else x


class RepeatFrames(nn.Module):
    """An image [B, C, H, W] becomes a 2-frame clip [B, C, 2, H, W] (vision only)."""

    def forward(self, x):
        return x.unsqueeze(2).expand(-1, -1, 2, -1, -1) if x.ndim == 4 else x


class PosEmbedding(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, dim))


class PatchPreprocessor(nn.Module):
    """Image-like inputs (audio mel spectrogram, depth, thermal, vision): patches + CLS token +
    learned position embedding. `stem_attr` is the attribute name the checkpoint uses."""

    def __init__(self, stem_attr, stem, n_patches, dim):
        super().__init__()
        self.stem_attr = stem_attr
        setattr(self, stem_attr, stem)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embedding_helper = PosEmbedding(n_patches + 1, dim)

    def forward(self, x):
        t = getattr(self, self.stem_attr)(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.pos_embedding_helper.pos_embed, None


class ImuPreprocessor(nn.Module):
    """[B, 6, 2000] -> 250 tokens of 8 samples x 6 channels (channel-major) -> Linear + LN."""

    def __init__(self, dim):
        super().__init__()
        self.imu_stem = Stem(nn.Linear(48, dim, bias=False), dim)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 251, dim))

    def forward(self, x):
        b = x.shape[0]
        t = x.reshape(b, 6, 250, 8).transpose(1, 2).reshape(b, 250, 48)
        t = self.imu_stem(t)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1)
        return t + self.pos_embed, None


class TextPreprocessor(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.token_embedding = nn.Embedding(49408, dim)
        self.pos_embed = nn.Parameter(torch.empty(1, CONTEXT, dim))
        # Additive causal mask; a persistent buffer, so it is part of the checkpoint.
        self.register_buffer("mask", torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1))

    def forward(self, ids):
        return self.token_embedding(ids) + self.pos_embed, self.mask


class SelectToken(nn.Module):
    def forward(self, x):
        return x[:, 0]


class TextHead(nn.Module):
    """LayerNorm + projection of the end-of-text token (the largest id of each row)."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS), nn.Linear(dim, OUT_DIM, bias=False))

    def forward(self, x, ids):
        # argmax on float: ONNX Runtime's CPU ArgMax has no int64 kernel; ids < 2^24 are exact.
        eot = ids.to(torch.float32).argmax(dim=-1)
        idx = eot.reshape(-1, 1, 1).expand(-1, 1, x.shape[-1])
        return self.proj(torch.gather(x, 1, idx).squeeze(1))


class L2Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    def __init__(self, init, learnable):
        super().__init__()
        value = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x):
        return torch.clamp(self.log_logit_scale.exp(), max=100.0) * x


def make_preprocessor(m):
    dim = TRUNKS[m][0]
    if m == "audio":   # 128x204 mel, 16x16 patches with stride 10 -> 12 x 19 = 228
        return PatchPreprocessor("rgbt_stem", Stem(nn.Conv2d(1, dim, 16, 10, bias=False), dim),
                                 228, dim)
    if m == "depth":
        return PatchPreprocessor("depth_stem", Stem(nn.Conv2d(1, dim, 16, 16, bias=False), dim),
                                 196, dim)
    if m == "thermal":
        return PatchPreprocessor("rgbt_stem", Stem(nn.Conv2d(1, dim, 16, 16, bias=False), dim),
                                 196, dim)
    if m == "vision":  # 2 frames x 16 x 16 patches of 14 px -> 256
        proj = nn.Sequential(RepeatFrames(), nn.Conv3d(3, dim, (2, 14, 14), (2, 14, 14), bias=False))
        return PatchPreprocessor("rgbt_stem", Stem(proj), 256, dim)
    if m == "imu":
        return ImuPreprocessor(dim)
    return TextPreprocessor(dim)


def make_head(m):
    dim = TRUNKS[m][0]
    if m == "text":
        return TextHead(dim)
    layers = [nn.LayerNorm(dim, eps=LN_EPS), SelectToken()]
    if m == "imu":
        layers.append(nn.Dropout(p=0.5))   # index 2 in the checkpoint's layout; identity in eval
    layers.append(nn.Linear(dim, OUT_DIM, bias=False))
    return nn.Sequential(*layers)


def make_postprocessor(m):
    if m == "vision":
        return L2Normalize()
    if m == "text":
        return nn.Sequential(L2Normalize(), LogitScale(1 / 0.07, learnable=True))
    return nn.Sequential(L2Normalize(), LogitScale(SCALES[m], learnable=False))


class ImageBind(nn.Module):
    """ImageBind huge, restricted to `modalities` (all six to load a full checkpoint)."""

    def __init__(self, modalities):
        super().__init__()
        self.modality_preprocessors = nn.ModuleDict({m: make_preprocessor(m) for m in modalities})
        self.modality_trunks = nn.ModuleDict({m: Trunk(*TRUNKS[m]) for m in modalities})
        self.modality_heads = nn.ModuleDict({m: make_head(m) for m in modalities})
        self.modality_postprocessors = nn.ModuleDict({m: make_postprocessor(m) for m in modalities})

    def encode(self, m, x):
        clips = x.ndim >= 5                      # audio/video: [B, S, ...] -> [B*S, ...]
        if clips:
            b, s = x.shape[0], x.shape[1]
            x = x.flatten(0, 1)
        tokens, mask = self.modality_preprocessors[m](x)
        tokens = self.modality_trunks[m](tokens, mask)
        head = self.modality_heads[m]
        y = head(tokens, x) if m == "text" else head(tokens)
        y = self.modality_postprocessors[m](y)
        if clips:                                # mean of the S per-clip embeddings
            y = y.reshape(b, s, -1).mean(dim=1)
        return y


class Encoder(nn.Module):
    """One modality of `model` as a single-input module for export."""

    def __init__(self, model, modality):
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x):
        return self.model.encode(self.modality, x)


@torch.no_grad()
def random_init(model, seed):
    """Deterministic stand-in weights with sane activation scales (NOT ImageBind's values)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if name.endswith("log_logit_scale"):
            continue
        if p.ndim == 1:                          # biases and LayerNorm
            p.fill_(1.0 if name.endswith(".weight") else 0.0)
        elif "pos_embed" in name or "bias_k" in name or "bias_v" in name or "cls_token" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        elif "token_embedding" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        else:                                    # Linear / conv weights: Xavier uniform
            fan_out, fan_in = p.shape[0], int(np.prod(p.shape[1:]))
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)


def load_checkpoint(path):
    """The official file is a plain state dict; a wrapped one ({'model': ...}) is accepted too."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        sys.exit(f"{path}: not a state dict")
    model = ImageBind(EXPORTABLE)
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        sys.exit(f"{path}: does not match ImageBind huge:\n  missing: {result.missing_keys[:20]}"
                 f"\n  unexpected: {result.unexpected_keys[:20]}")
    model.load_state_dict(sd, strict=True)   # also checks every shape
    return model


# --------------------------------------------------------------------------- tokenizer
@lru_cache()
def byte_alphabet():
    """Reversible byte -> printable character map of GPT-2/CLIP byte-level BPE: printable
    Latin-1 bytes map to themselves, the other 68 bytes to code points from 256 up, in byte
    order. Insertion order matters: the vocabulary lists the printable bytes first."""
    keep = [b for b in range(256) if (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255)]
    table = {b: chr(b) for b in keep}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return table


class ClipTokenizer:
    """CLIP BPE tokenizer as ImageBind uses it (SPEC.md section 7): SOT + BPE[:75] + EOT, zero
    padded to 77 (EOT kept at index 76 when truncating)."""

    PATTERN = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"""
               r"""[\p{N}]|[^\s\p{L}\p{N}]+""")

    def __init__(self, bpe_path):
        import regex
        self.regex = regex.compile(self.PATTERN, regex.IGNORECASE)
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
        chars = list(byte_alphabet().values())
        vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {}
        try:
            import ftfy
            self.fix = ftfy.fix_text
        except ImportError:
            print("note: ftfy not installed; text is not mojibake-repaired (only matters for "
                  "broken Unicode in labels)", file=sys.stderr)
            self.fix = lambda s: s

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), i)
                     for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == math.inf:
                break
            a, b = next((parts[i], parts[i + 1]) for r, i in pairs if r == rank)
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text):
        text = html.unescape(html.unescape(self.fix(text))).strip()
        text = " ".join(text.split()).lower()
        alphabet = byte_alphabet()
        out = []
        for piece in self.regex.findall(text):
            word = "".join(alphabet[b] for b in piece.encode("utf-8"))
            out.extend(self.ids[p] for p in self.bpe(word))
        return out

    def __call__(self, texts):
        rows = np.zeros((len(texts), CONTEXT), np.int64)
        for r, t in enumerate(texts):
            ids = [SOT] + self.encode(t)[:CONTEXT - 2] + [EOT]
            rows[r, :len(ids)] = ids
        return rows


def find_bpe(explicit):
    candidates = [explicit, os.environ.get("EDGEBIND_BPE")]
    for pkg, sub in (("open_clip", ""), ("imagebind", "bpe")):
        spec = importlib.util.find_spec(pkg) if explicit is None else None
        if spec and spec.submodule_search_locations:
            candidates.append(os.path.join(list(spec.submodule_search_locations)[0], sub, BPE_NAME))
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    sys.exit(f"CLIP BPE vocabulary {BPE_NAME} not found: pass --bpe PATH (it ships in the "
             "open-clip-torch wheel as open_clip/" + BPE_NAME + ")")


def check_tokenizer(tok, refdata):
    """Compare with ImageBind's own token ids for the reference prompts, when refdata is there."""
    prompts = os.path.join(refdata, "text", "text_prompts.json")
    ids = os.path.join(refdata, "text", "text_tokens_int64.npy")
    if not (os.path.isfile(prompts) and os.path.isfile(ids)):
        print(f"tokenizer: reference prompts not found under {refdata}; not checked")
        return
    with open(prompts, encoding="utf-8") as f:
        texts = json.load(f)["prompts"]
    want, got = np.load(ids), tok(texts)
    bad = [t for t, w, g in zip(texts, want, got) if not np.array_equal(w, g)]
    if bad:
        sys.exit(f"tokenizer differs from ImageBind's on {len(bad)} reference prompts: {bad[:3]}")
    print(f"tokenizer: {len(texts)} reference prompts tokenized exactly like ImageBind")


# --------------------------------------------------------------------------- export + verify
def example_input(m, batch, clips, gen):
    shape = [batch, clips, 1, 128, 204] if m == "audio" else \
        [batch if d is None else d for d in INPUTS[m][0]]
    if m == "text":
        ids = torch.zeros(shape, dtype=torch.int64)
        for r in range(batch):
            n = int(torch.randint(1, CONTEXT - 1, (1,), generator=gen))
            ids[r, 0] = SOT
            ids[r, 1:n + 1] = torch.randint(1, SOT, (n,), generator=gen)
            ids[r, n + 1 if n + 1 < CONTEXT else CONTEXT - 1] = EOT
        return ids
    return torch.randn(shape, generator=gen)


def export_one(model, m, path, opset):
    """Exports `m` to `path`. Encoders in EXTERNAL_DATA are exported into a scratch folder next
    to `path` (the TorchScript exporter writes one external file per tensor above 2 GB);
    annotate() then writes `path` with a single data file. Returns the exported file."""
    enc = Encoder(model, m).eval()
    example = example_input(m, 2, 3, torch.Generator().manual_seed(0))
    _, axes = INPUTS[m]
    kwargs = dict(input_names=[m], output_names=["embedding"], opset_version=opset,
                  dynamic_axes={m: axes, "embedding": {0: "batch"}}, do_constant_folding=True)
    target = path
    if m in EXTERNAL_DATA:
        scratch = tempfile.mkdtemp(prefix=f".{m}-export-", dir=os.path.dirname(path) or ".")
        target = os.path.join(scratch, os.path.basename(path))
    with torch.no_grad():
        try:
            torch.onnx.export(enc, (example,), target, dynamo=False, **kwargs)
        except TypeError:                        # torch < 2.5 has no `dynamo` argument
            torch.onnx.export(enc, (example,), target, **kwargs)
    return target


def data_file(path):
    return path + ".data"


def annotate(exported, path, m, source):
    """Loads the exported file (with its external data), sets the output shape and metadata and
    writes `path`; for EXTERNAL_DATA modalities all weights go to one `<file>.data`."""
    import onnx
    model = onnx.load(exported)
    # The tracer loses the static 1024 after audio's clip mean and text's EOT gather; the
    # contract (and edgebind's loader) wants [batch, 1024] declared.
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[1].Clear()
    dims[1].dim_value = OUT_DIM
    model.producer_name = "edgebind tools/export_imagebind.py"
    model.doc_string = f"ImageBind huge {m} encoder ({source})"
    for k, v in (("edgebind.modality", m), ("edgebind.source", source)):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if m not in EXTERNAL_DATA:
        onnx.checker.check_model(model)
        onnx.save(model, path)
        return
    # onnx appends to an existing data file: start from nothing.
    for old in (path, data_file(path)):
        if os.path.exists(old):
            os.remove(old)
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(data_file(path)), size_threshold=1024)
    del model
    # onnx creates the data file private (0600); give it the graph file's permissions so a
    # service user that can read vision.onnx can read its weights too.
    os.chmod(data_file(path), os.stat(path).st_mode & 0o777)
    onnx.checker.check_model(path)               # by path: the in-memory model exceeds 2 GB
    shutil.rmtree(os.path.dirname(exported))


def verify(model, m, path, threads, tolerance, seed):
    """Random inputs through PyTorch and onnxruntime: batch 2 (audio 3 clips) and batch 1
    (audio 1 clip), so both dynamic axes are exercised."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    shape, axes = INPUTS[m]
    want_in = [axes.get(i, d) for i, d in enumerate(shape)]
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    if (inp.name, inp.shape, out.name, out.shape) != (m, want_in, "embedding", ["batch", OUT_DIM]):
        sys.exit(f"{path}: declares {inp.name} {inp.shape} -> {out.name} {out.shape}, expected "
                 f"{m} {want_in} -> embedding ['batch', {OUT_DIM}]")
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch, clips in ((2, 3), (1, 1)):
        x = example_input(m, batch, clips, gen)
        with torch.no_grad():
            want = model.encode(m, x).numpy()
        got = sess.run(["embedding"], {m: x.numpy()})[0]
        if got.shape != (batch, OUT_DIM):
            sys.exit(f"{path}: output shape {got.shape}, expected ({batch}, {OUT_DIM})")
        worst = max(worst, float(np.abs(got - want).max()))
    norm = float(np.linalg.norm(want, axis=-1).mean())
    status = "ok" if worst <= tolerance else "FAILED"
    print(f"  verify {m}: max |onnx - torch| = {worst:.3g} (output norm {norm:.3g}) {status}")
    if worst > tolerance:
        sys.exit(f"{path}: ONNX output differs from PyTorch by {worst:.3g} > {tolerance}")
    return worst


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f]
    labels = [lab for lab in labels if lab and not lab.startswith("#")]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        sys.exit(f"{path}: duplicate labels {dup}")
    if not labels:
        sys.exit(f"{path}: no labels")
    return labels


@torch.no_grad()
def encode_text_prefix(model, ids):
    """model.encode("text", ids) computed on the first L = max EOT index + 1 positions only. The
    mask is causal, so no position before L looks at a later one: same result (up to float
    rounding), ~77 / L times less work for short labels."""
    n = int(ids.argmax(dim=-1).max()) + 1
    pre = model.modality_preprocessors["text"]
    tokens = pre.token_embedding(ids[:, :n]) + pre.pos_embed[:, :n]
    tokens = model.modality_trunks["text"](tokens, pre.mask[:n, :n])
    y = model.modality_heads["text"](tokens, ids[:, :n])
    return model.modality_postprocessors["text"](y)


@torch.no_grad()
def concept_bank(model, tok, labels, batch=32):
    rows = []
    for i in range(0, len(labels), batch):
        ids = torch.from_numpy(tok(labels[i:i + batch]))
        rows.append(encode_text_prefix(model, ids).numpy())
    bank = np.concatenate(rows, 0).astype(np.float32)
    # The shortcut must agree with the full 77-token encoder (what text.onnx computes).
    ids = torch.from_numpy(tok(labels[:4]))
    full = model.encode("text", ids).numpy()
    diff = float(np.abs(full - bank[:len(ids)]).max())
    if diff > 1e-3:
        sys.exit(f"concept bank: prefix encoding differs from the full encoder by {diff:.3g}")
    print(f"  concept bank rows vs full 77-token encoder: max |delta| = {diff:.3g}")
    return bank


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="imagebind_huge.pth (official ImageBind weights)")
    src.add_argument("--random-init", action="store_true",
                     help="random weights (checks the tool; outputs are meaningless)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "imagebind"))
    ap.add_argument("--modalities", default="audio,depth,thermal,imu,text",
                    help=f"comma-separated, from {','.join(EXPORTABLE)}")
    ap.add_argument("--labels", default=os.path.join(REPO, "models", "labels.txt"),
                    help="concept labels, one per line ('#' comments)")
    ap.add_argument("--no-concepts", action="store_true",
                    help="skip the concept bank (the manifest then cannot be used by the daemon)")
    ap.add_argument("--bpe", help=f"CLIP BPE vocabulary {BPE_NAME}")
    ap.add_argument("--refdata", default=os.environ.get("EDGEBIND_REFDATA",
                                                        os.path.join(REPO, "..", "shared", "refdata")))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest accepted |onnx - torch| (outputs are scaled 5..100)")
    ap.add_argument("--name", help="model-set name for the manifest")
    ap.add_argument("--quantize", choices=["int8"],
                    help="also write an int8 model set made from the export by "
                    "tools/quantize_int8.py (dynamic int8 MatMul/Gemm weights, fp32 reference "
                    "outputs, the accepted tolerance in its manifest)")
    ap.add_argument("--quantize-out", help="folder of the int8 set (default: <out>-int8)")
    ap.add_argument("--int8-min-cosine", type=float, default=0.98,
                    help="accepted cosine of an int8 encoder to fp32 on the reference inputs; "
                    "recorded as its parity threshold (default 0.98)")
    args = ap.parse_args()

    mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = [m for m in mods if m not in EXPORTABLE]
    if unknown or not mods:
        sys.exit(f"--modalities: unknown {unknown}; choose from {EXPORTABLE}")
    if args.opset < 17:
        sys.exit("--opset must be >= 17")
    torch.set_num_threads(args.threads)
    need_text = "text" in mods or not args.no_concepts
    tok = None
    if need_text:
        bpe = find_bpe(args.bpe)
        tok = ClipTokenizer(bpe)
        check_tokenizer(tok, args.refdata)
        labels = None if args.no_concepts else read_labels(args.labels)

    t0 = time.time()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        source = f"checkpoint {os.path.basename(args.checkpoint)} sha256 {sha256(args.checkpoint)}"
        licence = LICENCE_CHECKPOINT
        print(f"loaded {args.checkpoint} (strict) in {time.time() - t0:.1f} s")
    else:
        model = ImageBind(sorted(set(mods) | ({"text"} if need_text else set())))
        random_init(model, args.seed)
        source = f"random init, seed {args.seed}"
        licence = LICENCE_RANDOM
        print(f"built random-init ImageBind huge ({', '.join(model.modality_trunks)}) "
              f"in {time.time() - t0:.1f} s")
    model.eval()   # IMU head Dropout(0.5) and trunk DropPath must be off

    os.makedirs(args.out, exist_ok=True)
    entries, text_entry = {}, None
    for m in mods:
        path = os.path.join(args.out, f"{m}.onnx")
        t0 = time.time()
        annotate(export_one(model, m, path, args.opset), path, m, source)
        size_mb = os.path.getsize(path) / 1e6
        if m in EXTERNAL_DATA:
            print(f"exported {path} ({size_mb:.1f} MB) + {os.path.basename(data_file(path))} "
                  f"({os.path.getsize(data_file(path)) / 1e6:.0f} MB) in {time.time() - t0:.1f} s")
        else:
            print(f"exported {path} ({size_mb:.0f} MB) in {time.time() - t0:.1f} s")
        verify(model, m, path, args.threads, args.tolerance, args.seed + 1)
        entry = {"file": f"{m}.onnx", "sha256": sha256(path), "input": m, "output": "embedding"}
        if m in EXTERNAL_DATA:
            name = os.path.basename(data_file(path))
            entry["external_data"] = [{"file": name, "sha256": sha256(data_file(path))}]
        if m in SENSOR_MODALITIES or m == "vision":
            entries[m] = entry
        else:
            text_entry = entry if m == "text" else text_entry

    manifest = {
        "format": 1,
        "name": args.name or ("imagebind-huge" if args.checkpoint else "imagebind-huge-random"),
        "licence": licence,
        "embedding_dim": OUT_DIM,
        "models": entries,
    }
    if not args.no_concepts:
        t0 = time.time()
        bank = concept_bank(model, tok, labels)
        with open(os.path.join(args.out, "concepts.txt"), "w", encoding="utf-8") as f:
            f.write("".join(lab + "\n" for lab in labels))
        np.save(os.path.join(args.out, "concepts.npy"), bank)
        manifest["concepts"] = {
            "labels": "concepts.txt", "embeddings": "concepts.npy",
            "sha256": {n: sha256(os.path.join(args.out, n)) for n in ("concepts.txt", "concepts.npy")},
        }
        print(f"concept bank: {len(labels)} labels from {args.labels} in {time.time() - t0:.1f} s")
    if text_entry is not None:
        shutil.copyfile(bpe, os.path.join(args.out, BPE_NAME))
        text_entry["tokenizer"] = BPE_NAME
        text_entry["tokenizer_sha256"] = sha256(os.path.join(args.out, BPE_NAME))
        manifest["text"] = text_entry
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.join(args.out, 'manifest.json')}")
    if args.quantize == "int8":
        if not entries or args.no_concepts:
            sys.exit("--quantize int8 needs at least one sensor encoder and the concept bank")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import quantize_int8
        out8 = args.quantize_out or args.out.rstrip("/") + "-int8"
        quantize_int8.main(["--src", args.out, "--out", out8, "--name", manifest["name"] + "-int8",
                            "--refdata", args.refdata, "--threads", str(args.threads),
                            "--min-cosine", str(args.int8_min_cosine)])
    if "vision" in entries:
        print("note: models.vision (with its external_data file) is for edgebind builds that "
              "serve vision; older builds refuse a manifest naming it (export without vision "
              "for them)")


if __name__ == "__main__":
    main()
