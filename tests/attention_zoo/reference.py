"""Naive float64 references for every attention_zoo backend.

Each reference recomputes a built module's output from its parameters alone, one sequence at a time, with
the whole attention materialised: an N x N matrix (N x (N + landmarks) for Transformer-LS). They are
written from the formulas of PAPER.md (sections 2 and 3) and the modules' docstrings; nothing here calls
attention_zoo's ops or a mixer's ``attend``. A padded batch is referenced by running every sequence alone
(its real tokens only, at positions 0..n-1) and putting the result back at the real positions, with
zeros at the padded ones: that is the contract "padded keys never influence unpadded outputs".

Entry point: ``reference_forward(name, knobs, module, x, padding_mask)`` with the registry name and the
full knob mapping the module was built with (``full_knobs`` fills in the defaults).
"""
from __future__ import annotations

import math

import torch
from torch import nn

import attention_zoo

# PAPER.md section 2, written out again here so that the presets are checked against the paper, not
# against the registry's own table.
PRESETS = {
    "transnormer_t1": (
        {"inner": "relu", "norm": "srmsnorm"},  # DiagAttention: ReLU(q k^T), then SimpleRMSNorm
        {"feature_map": "elu", "norm": "srmsnorm"},  # NormAttention: phi = elu
    ),
    "transnormer_t2": (
        {"inner": "softmax", "norm": "none"},  # DiagAttention: softmax inside the block, no norm
        {"feature_map": "1+elu", "norm": "srmsnorm"},  # NormAttention: phi = 1 + elu
    ),
}

FEATURE_MAPS = {
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "1+elu": lambda x: 1 + torch.where(x > 0, x, torch.exp(x) - 1),
    "relu": lambda x: torch.clamp_min(x, 0),
    "silu": lambda x: x / (1 + torch.exp(-x)),
}


def full_knobs(name: str, knobs: dict) -> dict:
    """The registry defaults overlaid with ``knobs``."""
    spec = attention_zoo.get_spec(name)
    return spec.knobs | spec.fixed_knobs | knobs


# ------------------------------------------------------------------------------------------- pieces
def affine(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    out = x @ layer.weight.t()
    return out if layer.bias is None else out + layer.bias


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[N, D] -> [H, N, D/H]``."""
    n, width = x.shape
    return x.reshape(n, n_heads, width // n_heads).transpose(0, 1)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[H, N, d] -> [N, H d]``."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def causal_mask(n: int, device) -> torch.Tensor:
    """``[N, N]`` bool, True where key j may be seen by query i (j <= i)."""
    i = torch.arange(n, device=device)
    return i[None, :] <= i[:, None]


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the dimension pairs (x_i, x_{i + d/2}) of ``x[..., N, d]`` by ``angles[N, d/2]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def relative_position(kind: str, pos_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """RoPE (fixed angles 10000^(-2i/d)) or LRPE (Householder reflection with the module's unit vector,
    then rotation by the module's learnable theta) on ``x[..., N, d]`` at positions 0..N-1."""
    if kind == "none":
        return x
    n, d = x.shape[-2:]
    positions = torch.arange(n, dtype=torch.float64, device=x.device)
    if kind == "rope":
        freqs = 10000.0 ** (-2.0 * torch.arange(d // 2, dtype=torch.float64, device=x.device) / d)
        return rotate(x, positions[:, None] * freqs)
    if kind == "lrpe":
        u = pos_module.householder
        reflected = x - 2 * (x * u).sum(-1, keepdim=True) * u
        return rotate(reflected, positions[:, None] * pos_module.theta)
    raise ValueError(kind)


def output_norm(kind: str, norm_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm over the full width D of ``x[N, D]`` (BatchNorm: its running statistics, eval mode)."""
    width = x.shape[-1]
    if kind == "none":
        return x
    if kind == "srmsnorm":  # x / (||x|| D^-1/2 + 1e-8), no parameter
        return x / (x.norm(dim=-1, keepdim=True) * width**-0.5 + 1e-8)
    if kind == "rmsnorm":
        layer = norm_module.norm
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + layer.eps) * layer.weight
    if kind == "layernorm":
        return layer_norm(norm_module.norm, x)
    if kind == "batchnorm":
        layer = norm_module.norm
        assert not layer.training, "the reference covers BatchNorm in eval mode only"
        return (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * layer.weight + layer.bias
    raise ValueError(kind)


def layer_norm(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + layer.eps) * layer.weight + layer.bias


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    scores = scores.masked_fill(~allowed, -math.inf)
    scores = scores - scores.amax(-1, keepdim=True)
    weights = torch.exp(scores)
    return weights / weights.sum(-1, keepdim=True)


def qkv(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three projections of a multi-head mixer, split into heads: ``[H, N, d]`` each."""
    return tuple(split_heads(affine(proj, x), module.n_heads) for proj in (module.q_proj, module.k_proj, module.v_proj))


def finish(module: nn.Module, heads_out: torch.Tensor, norm: str = "none") -> torch.Tensor:
    """Merge heads, norm over D, output projection."""
    return affine(module.out_proj, output_norm(norm, module.output_norm, merge_heads(heads_out)))


# ------------------------------------------------------------------------------------------ backends
def vanilla(module, knobs, x):
    q, k, v = qkv(module, x)
    q, k = (relative_position(knobs["pos"], module.pos, t) for t in (q, k))
    n, d = x.shape[0], module.head_dim
    allowed = causal_mask(n, x.device) if module.causal else torch.ones(n, n, dtype=torch.bool, device=x.device)
    return finish(module, masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), allowed) @ v)


def kernel_attention(weights: torch.Tensor, v: torch.Tensor, causal: bool, normalise: str | None, eps: float):
    """``weights [H, N, N]`` (already >= 0 where it matters) -> sum_j w_ij v_j, optionally over the row sum."""
    n = weights.shape[-1]
    if causal:
        weights = weights * causal_mask(n, weights.device)
    out = weights @ v
    if normalise is None:
        return out
    row_sum = weights.sum(-1, keepdim=True)
    return out / (row_sum + eps if normalise == "add" else torch.clamp_min(row_sum, eps))


def elu(module, knobs, x):
    q, k, v = qkv(module, x)
    phi = FEATURE_MAPS["1+elu"]
    weights = phi(q) @ phi(k).transpose(-1, -2)
    out = kernel_attention(weights, v, module.causal, "add" if knobs["normalize"] else None, knobs["eps"])
    return finish(module, out)


def performer(module, knobs, x, *, differentiate_eps_scale: bool = False):
    """Exact FAVOR+ features (no stabiliser): phi(x) = m^-1/2 exp(W x' - |x'|^2 / 2), x' = d^-1/4 x,
    normalised like 1+elu. The epsilon is relative to the largest feature scale (the documented design):
    o_i = sum_j A_ij v_j / (sum_j A_ij + eps exp(a_i + c_i)), a_i the largest logit of query i, c_i the
    largest logit of the keys query i sees (all keys bidirectionally, keys j <= i causally); that scale is
    not differentiated (``differentiate_eps_scale=True``: it is, the function before the stabilisers)."""
    q, k, v = qkv(module, x)
    projection = module.projection  # [m, d]
    m, d = projection.shape

    def logits(t):
        t = t * d**-0.25
        return t @ projection.t() - 0.5 * t.pow(2).sum(-1, keepdim=True)

    q_logits, k_logits = logits(q), logits(k)
    weights = (m**-0.5 * torch.exp(q_logits)) @ (m**-0.5 * torch.exp(k_logits)).transpose(-1, -2)
    key_max = k_logits.amax(-1)  # [H, N]
    if module.causal:
        weights = weights * causal_mask(x.shape[0], x.device)
        key_scale = key_max.cummax(-1).values
    else:
        key_scale = key_max.amax(-1, keepdim=True).expand_as(key_max)
    # the epsilon's scale is a constant for autograd (the mixer's stabilisers are: ops/favor.py)
    scale = torch.exp(q_logits.amax(-1) + key_scale)
    eps = knobs["eps"] * (scale if differentiate_eps_scale else scale.detach())[..., None]
    return finish(module, weights @ v / (weights.sum(-1, keepdim=True) + eps))


def cosformer(module, knobs, x):
    """relu features, weights (q_i . k_j) cos(pi/2 (i - j) / M), positions 1..n, M = n or max_len."""
    q, k, v = qkv(module, x)
    n = x.shape[0]
    horizon = n if knobs["max_len"] is None else knobs["max_len"]
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    reweight = torch.cos(math.pi / 2 * (positions[:, None] - positions[None, :]) / horizon)
    weights = (torch.clamp_min(q, 0) @ torch.clamp_min(k, 0).transpose(-1, -2)) * reweight
    return finish(module, kernel_attention(weights, v, module.causal, "clamp", knobs["eps"]))


def norm_attention(module, knobs, x):
    """Norm(phi(Q) phi(K)^T V) with LRPE on phi(q), phi(k); no scale, no denominator."""
    q, k, v = qkv(module, x)
    phi = FEATURE_MAPS[knobs["feature_map"]]
    q, k = (relative_position(knobs["pos"], module.pos, phi(t)) for t in (q, k))
    out = kernel_attention(q @ k.transpose(-1, -2), v, module.causal, None, 0.0)
    return finish(module, out, knobs["norm"])


def diag_attention(module, knobs, x):
    """Attention inside blocks of w tokens: positions restart at 0 in every block, q scaled by d^-1/2."""
    q, k, v = qkv(module, x)
    n, w = x.shape[0], knobs["block_size"]
    q = q * module.head_dim**-0.5

    def positional(t):  # each block on its own, positions 0..w-1
        return torch.cat(
            [relative_position(knobs["pos"], module.pos, t[:, s : s + w]) for s in range(0, n, w)], dim=1
        )

    q, k = positional(q), positional(k)
    block = torch.arange(n, device=x.device) // w
    allowed = block[:, None] == block[None, :]
    if module.causal:
        allowed = allowed & causal_mask(n, x.device)
    scores = q @ k.transpose(-1, -2)
    if knobs["inner"] == "softmax":
        weights = masked_softmax(scores, allowed)
    else:
        weights = torch.clamp_min(scores, 0) * allowed
    return finish(module, weights @ v, knobs["norm"])


def gated_attention_unit(module, knobs, x):
    """GAU: out = W_o(u * (A v)); FLASH-quad A = relu(q k^T / n)^2 over the sequence; FLASH: relu^2 / G
    inside groups of G plus a linear part (lin_q . lin_k) over earlier groups / G (causal) or over all
    tokens / n (bidirectional)."""
    n = x.shape[0]
    u, v = silu(affine(module.to_uv, x)).chunk(2, dim=-1)
    z = silu(affine(module.to_z, x))
    gamma, beta = module.offset_scale.gamma, module.offset_scale.beta
    parts = [relative_position(knobs["pos"], None, z * gamma[i] + beta[i]) for i in range(gamma.shape[0])]
    group = knobs["group_size"]
    causal = causal_mask(n, x.device) if module.causal else torch.ones(n, n, dtype=torch.bool, device=x.device)
    if group is None:
        q, k = parts
        weights = torch.clamp_min(q @ k.t() / n, 0).pow(2) * causal
    else:
        quad_q, quad_k, lin_q, lin_k = parts
        g = torch.arange(n, device=x.device) // group
        same_group = g[:, None] == g[None, :]
        quadratic = torch.clamp_min(quad_q @ quad_k.t() / group, 0).pow(2) * (same_group & causal)
        if module.causal:
            linear = (lin_q @ lin_k.t()) / group * (g[None, :] < g[:, None])
        else:
            linear = (lin_q @ lin_k.t()) / n
        weights = quadratic + linear
    return affine(module.out_proj, u * (weights @ v))


def sinusoids(distances: torch.Tensor, width: int) -> torch.Tensor:
    """``[P, width]``: E(p)_j = sin(p / 10000^(2j/width)) for j < width/2, then the cosines (Transformer-XL)."""
    j = torch.arange(width // 2, dtype=torch.float64, device=distances.device)
    angles = distances.to(torch.float64)[:, None] / 10000.0 ** (2 * j / width)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def dual_layer_norm(kind: str, layer: nn.LayerNorm | None, x: torch.Tensor) -> torch.Tensor:
    """DualLN on ``x[H, M, d]``: over each head's d (``head``), over the merged H d (``model``), or none."""
    if kind == "none":
        return x
    if kind == "head":
        return layer_norm(layer, x)
    return split_heads(layer_norm(layer, merge_heads(x)), x.shape[0])


def long_short(module, knobs, x):
    """One softmax per query over [local window keys, global low-rank keys], written as an explicit
    N x (N + landmarks) masked matrix. DualLN: local keys/values and global keys/values normalised apart.
    Causal relative positions (Transformer-XL style, the authors' autoregressive code), q' = q / sqrt(d):
    local logit (q'_i + u) . k_j + (q'_i + v) . W_r E(i - j); global logit for vector m of segment c, seen
    from segment s: q'_i . K_bar_(c, m) + q'_i . (W_c E((s - 1 - c) r + r - 1 - m) + b_c)."""
    q, k, v = qkv(module, x)
    n, (H, d), w = x.shape[0], (module.n_heads, module.head_dim), knobs["window_size"]
    rank = knobs["segment_landmarks"] if module.causal else knobs["n_landmarks"]
    dual_ln = knobs["dual_ln"] or ("model" if module.causal else "head")
    logits = affine(module.to_landmarks, x).reshape(n, H, rank).transpose(0, 1)  # [H, N, r]
    i = torch.arange(n, device=x.device)
    segment = i // w
    if module.causal:  # own segment up to i, plus the whole previous segment
        local = (i[None, :] >= segment[:, None] * w - w) & (i[None, :] <= i[:, None])
        k_global, v_global, global_segment, global_rank = [], [], [], []
        for c in range(segment.max().item() + 1):
            members = segment == c
            p = torch.softmax(logits[:, members], dim=1)  # over the positions of segment c
            k_global.append(p.transpose(-1, -2) @ k[:, members])
            v_global.append(p.transpose(-1, -2) @ v[:, members])
            global_segment += [c] * rank
            global_rank += list(range(rank))
        k_global, v_global = torch.cat(k_global, dim=1), torch.cat(v_global, dim=1)
        global_segment = torch.tensor(global_segment, device=x.device)
        glob = global_segment[None, :] < segment[:, None]
    else:  # own segment plus half a segment on each side; r landmarks of the whole sequence
        local = (i[None, :] >= segment[:, None] * w - w // 2) & (i[None, :] < (segment[:, None] + 1) * w + w // 2)
        p = torch.softmax(logits, dim=1)
        k_global, v_global = p.transpose(-1, -2) @ k, p.transpose(-1, -2) @ v
        glob = torch.ones(n, rank, dtype=torch.bool, device=x.device)
    k_local, v_local = (dual_layer_norm(dual_ln, module.local_norm, t) for t in (k, v))
    k_global, v_global = (dual_layer_norm(dual_ln, module.global_norm, t) for t in (k_global, v_global))
    q = q / math.sqrt(d)
    local_logits = q @ k_local.transpose(-1, -2)  # [H, N, N]
    global_logits = q @ k_global.transpose(-1, -2)  # [H, N, landmarks]
    if module.causal and knobs["relative_positions"]:
        width = H * d
        distance = (i[:, None] - i[None, :]).clamp_min(0)  # only j <= i is ever allowed
        r_local = split_heads(sinusoids(distance.flatten(), width) @ module.window_position_proj.weight.t(), H)
        r_local = r_local.reshape(H, n, n, d)  # [H, i, j, d]: W_r E(i - j)
        u, v_bias = module.content_bias[:, None, :], module.position_bias[:, None, :]
        local_logits = (q + u) @ k_local.transpose(-1, -2) + ((q + v_bias)[:, :, None, :] * r_local).sum(-1)
        global_rank = torch.tensor(global_rank, device=x.device)
        index = (segment[:, None] - 1 - global_segment[None, :]) * rank + rank - 1 - global_rank[None, :]
        r_global = split_heads(affine(module.segment_position_proj, sinusoids(index.clamp_min(0).flatten(), width)), H)
        r_global = r_global.reshape(H, n, -1, d)  # [H, i, (c, m), d]
        global_logits = global_logits + (q[:, :, None, :] * r_global).sum(-1)
    scores = torch.cat([local_logits, global_logits], dim=-1)
    values = torch.cat([v_local, v_global], dim=1)
    allowed = torch.cat([local, glob], dim=1)  # [N, N + landmarks]
    out = masked_softmax(scores, allowed) @ values
    return finish(module, out)


def decay_weights(log_decays: torch.Tensor, causal: bool) -> torch.Tensor:
    """``w_ij = prod of the decays of the tokens after min(i, j) up to max(i, j)`` for log-decays ``[H, N(, d)]``:
    ``[H, N, N(, d)]``, zero above the diagonal when causal."""
    running = log_decays.cumsum(1)
    weights = torch.exp(-(running[:, :, None] - running[:, None, :]).abs())
    if causal:
        mask = causal_mask(log_decays.shape[1], log_decays.device)
        weights = weights * (mask if log_decays.dim() == 2 else mask[..., None])
    return weights


def head_rms(x: torch.Tensor, n_heads: int, gain: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm of each head's slice of ``x[N, H d]``."""
    heads = x.reshape(x.shape[0], n_heads, -1)
    heads = heads / torch.sqrt(heads.pow(2).mean(-1, keepdim=True) + eps)
    return (heads if gain is None else heads * gain).reshape(x.shape)


def gated_finish(module, x: torch.Tensor, normed: torch.Tensor, activation=silu) -> torch.Tensor:
    """The normed heads times the gate activation(x W), then the output projection."""
    return affine(module.out_proj, normed * activation(affine(module.output_gate.proj, x)))


def lightning(module, knobs, x):
    """TransNormerLLM: silu features with LRPE, decay lambda_h^|i-j|, SRMSNorm over D, times U = X W_u."""
    q, k, v = qkv(module, x)
    q, k = (relative_position(knobs["pos"], module.pos, silu(t)) for t in (q, k))
    h, layer, layers = module.n_heads, knobs["layer_index"], knobs["n_layers"]
    assert h & (h - 1) == 0, "the reference writes ALiBi's slopes for a power-of-two head count"
    slopes = 2.0 ** (-8.0 * torch.arange(1, h + 1, dtype=torch.float64) / h)
    depth = 1 - layer / (layers - 1) + 1e-5 if layers > 1 else 1 + 1e-5
    g = (-slopes * depth)[:, None].expand(h, x.shape[0]).to(x.device)
    out = ((q @ k.transpose(-1, -2)) * decay_weights(g, module.causal)) @ v
    return gated_finish(module, x, output_norm("srmsnorm", None, merge_heads(out)), activation=lambda u: u)


def retnet(module, knobs, x):
    """RetNet: rotary q, k / sqrt(d), gamma_h = 1 - 2^(-5-h), per-head RMSNorm without gain, silu gate."""
    q, k, v = qkv(module, x)
    q, k = relative_position(knobs["pos"], module.pos, q), relative_position(knobs["pos"], module.pos, k)
    k = k / math.sqrt(module.head_dim)
    gamma = 1 - 2.0 ** (-5.0 - torch.arange(module.n_heads, dtype=torch.float64))
    g = gamma.log()[:, None].expand(module.n_heads, x.shape[0]).to(x.device)
    out = ((q @ k.transpose(-1, -2)) * decay_weights(g, module.causal)) @ v
    return gated_finish(module, x, head_rms(merge_heads(out), module.n_heads, None))


def gla(module, knobs, x):
    """GLA: g = logsigmoid(W_up W_down x + b) / tau per key channel, q / sqrt(d), per-head RMSNorm, silu gate."""
    q, k, v = qkv(module, x)
    q = relative_position(knobs["pos"], module.pos, q / math.sqrt(module.head_dim))
    k = relative_position(knobs["pos"], module.pos, k)
    logits = affine(module.gate_up, x @ module.gate_down.weight.t())
    g = split_heads(-torch.log1p(torch.exp(-logits)) / knobs["gate_temperature"], module.n_heads)  # log sigmoid
    scores = torch.einsum("hid,hjd,hijd->hij", q, k, decay_weights(g, module.causal))
    out = scores @ v
    return gated_finish(module, x, head_rms(merge_heads(out), module.n_heads, module.output_norm.weight))


def short_conv(conv: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """The causal depthwise convolution of ``x[N, C]``: out_t = bias + sum_s w[:, s] x_{t - K + 1 + s}, x before
    the first token zero (``conv`` None: the identity)."""
    if conv is None:
        return x
    weight, n = conv.weight[:, 0, :], x.shape[0]  # [C, K]
    size = weight.shape[-1]
    out = torch.zeros_like(x) if conv.bias is None else conv.bias.expand_as(x)
    for s in range(size):
        shift = size - 1 - s  # tap s reads token t - shift
        shifted = torch.cat([x.new_zeros(min(shift, n), x.shape[1]), x[: max(n - shift, 0)]])
        out = out + weight[:, s] * shifted
    return out


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.exp(x))


def l2_normalised(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """flash-linear-attention's l2norm: x / sqrt(sum x^2 + eps)."""
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def delta_rule_recurrence(q, k, v, beta, log_alpha, causal: bool) -> torch.Tensor:
    """Token by token, with the papers' ``S [H, d_v, d_k]``: ``S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t
    v_t k_t^T``, ``o_t = S_t q_t`` (``q, k, v [H, N, d]``, ``beta``, ``log_alpha [H, N]``; None: alpha = 1).
    Bidirectional: plus ``R_{t+1} q_t`` with ``R_t = alpha_t (R_{t+1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T)``,
    ``R_N = 0``: the same rule over the strictly later tokens, run from the end."""
    heads, n, d_k = q.shape
    eye = torch.eye(d_k, dtype=q.dtype, device=q.device)
    alpha = torch.ones_like(beta) if log_alpha is None else torch.exp(log_alpha)

    def erase_and_write(state, t):
        b, kt = beta[:, t, None, None], k[:, t]
        return state @ (eye - b * kt[:, :, None] * kt[:, None, :]) + b * v[:, t, :, None] * kt[:, None, :]

    state, out = q.new_zeros(heads, v.shape[-1], d_k), []
    for t in range(n):
        state = erase_and_write(alpha[:, t, None, None] * state, t)
        out.append((state @ q[:, t, :, None])[..., 0])
    out = torch.stack(out, dim=1)
    if causal:
        return out
    later, reverse = [None] * n, q.new_zeros(heads, v.shape[-1], d_k)
    for t in reversed(range(n)):
        later[t] = (reverse @ q[:, t, :, None])[..., 0]
        reverse = alpha[:, t, None, None] * erase_and_write(reverse, t)
    return out + torch.stack(later, dim=1)


def delta_rule_backend(module, knobs, x):
    """DeltaNet / Gated DeltaNet: q, k, v = silu(conv(X W)), q and k L2-normalised, q / sqrt(d), beta =
    sigmoid(X W_beta); gated: log alpha = -exp(A_log) softplus(X W_a + dt_bias); per-head RMSNorm (eps 1e-5) with
    a gain; gated: times silu(X W_g)."""
    h = module.n_heads
    q, k, v = (split_heads(silu(short_conv(conv, affine(proj, x))), h) for proj, conv in (
        (module.q_proj, module.q_conv), (module.k_proj, module.k_conv), (module.v_proj, module.v_conv)))
    q, k = l2_normalised(q) / math.sqrt(module.head_dim), l2_normalised(k)
    beta = torch.sigmoid(x @ module.beta_proj.weight.t()).t()  # [H, N]
    log_alpha = None
    if knobs["gated"]:
        log_alpha = (-torch.exp(module.A_log) * softplus(x @ module.a_proj.weight.t() + module.dt_bias)).t()
    out = delta_rule_recurrence(q, k, v, beta, log_alpha, module.causal)
    normed = head_rms(merge_heads(out), h, module.output_norm.weight, eps=1e-5)
    return gated_finish(module, x, normed) if knobs["gated"] else affine(module.out_proj, normed)


def mamba2(module, knobs, x):
    """Mamba-2: z, x, B, C, dt projections; silu(conv([x, B, C])); dt = softplus(dt + dt_bias), A = -exp(A_log);
    per head h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t + D x_t (bidirectional: the symmetric decay,
    materialised); RMSNorm(y * silu(z)) (eps 1e-5, gain), output projection."""
    h, inner, state = module.n_heads, module.inner, knobs["d_state"]
    xbc = silu(short_conv(module.conv, torch.cat([affine(p, x) for p in (module.v_proj, module.k_proj,
                                                                              module.q_proj)], dim=-1)))
    xs, b, c = split_heads(xbc[:, :inner], h), xbc[:, inner : inner + state], xbc[:, inner + state :]
    dt = softplus(affine(module.dt_proj, x) + module.dt_bias).t()  # [H, N]
    log_decay = -torch.exp(module.A_log)[:, None] * dt
    if module.causal:
        hidden, ys = x.new_zeros(h, module.head_dim, state), []
        for t in range(x.shape[0]):
            hidden = torch.exp(log_decay[:, t, None, None]) * hidden + (
                dt[:, t, None, None] * xs[:, t, :, None] * b[t][None, None, :])
            ys.append(hidden @ c[t] + module.D[:, None] * xs[:, t])
        y = torch.stack(ys, dim=1)
    else:
        weights = (c @ b.t())[None] * decay_weights(log_decay, causal=False) * dt[:, None, :]  # [H, N, N]
        y = weights @ xs + module.D[:, None, None] * xs
    gated = merge_heads(y) * silu(affine(module.z_proj, x))
    normed = gated / torch.sqrt(gated.pow(2).mean(-1, keepdim=True) + 1e-5) * module.output_norm.norm.weight
    return affine(module.out_proj, normed)


def normalised_kernel(module, knobs, x, weights_of) -> torch.Tensor:
    """Kernel attention with the row-sum denominator + eps: ``weights_of(q, k) -> [H, N, N]`` (>= 0)."""
    q, k, v = qkv(module, x)
    return finish(module, kernel_attention(weights_of(q, k), v, module.causal, "add", knobs["eps"]))


def based(module, knobs, x):
    """Based: 1 + s + s^2 / 2 with s = q . k / sqrt(feature_dim), q and k feature_dim wide per head."""
    def weights(q, k):
        s = q @ k.transpose(-1, -2) / math.sqrt(knobs["feature_dim"])
        return 1 + s + s * s / 2

    return normalised_kernel(module, knobs, x, weights)


def hedgehog(module, knobs, x):
    """Hedgehog: phi(x) = [exp(z) / sum exp(z), exp(-z) / sum exp(-z)], z = x W_h + b_h per head (queries and keys
    each with their own W, b)."""
    def phi(t, layer):
        z = t @ layer.weight + layer.bias[:, None, :]
        return torch.cat([torch.exp(z) / torch.exp(z).sum(-1, keepdim=True),
                          torch.exp(-z) / torch.exp(-z).sum(-1, keepdim=True)], dim=-1)

    return normalised_kernel(module, knobs, x,
                             lambda q, k: phi(q, module.q_map) @ phi(k, module.k_map).transpose(-1, -2))


def relu_kernel(power: int):
    def backend(module, knobs, x):
        return normalised_kernel(module, knobs, x, lambda q, k: torch.clamp_min(q, 0) ** power @ (
            torch.clamp_min(k, 0) ** power).transpose(-1, -2))

    return backend


def hgrn2(module, knobs, x):
    """HGRN2, token by token with the paper's H_t (d_k x d_v per head): f = beta + (1 - beta) sigmoid(X W_f), beta =
    lower_bound or layer_index / n_layers; H_t = diag(f_t) H_{t-1} + (1 - f_t)^T i_t with i = silu(X W_i); y_t = o_t H_t
    with o = sigmoid(X W_o). Bidirectional: plus o_t R_t, R_t = sum_{j > t} (f_{t+1} ... f_j) (1 - f_j)^T i_j, run from
    the end (R_{t-1} = diag(f_t) (R_t + (1 - f_t)^T i_t)). LayerNorm over D, output projection."""
    h = module.n_heads
    beta = knobs["lower_bound"] if knobs["lower_bound"] is not None else knobs["layer_index"] / knobs["n_layers"]
    o = split_heads(torch.sigmoid(affine(module.q_proj, x)), h)
    f = beta + (1 - beta) * split_heads(torch.sigmoid(affine(module.k_proj, x)), h)
    i = split_heads(silu(affine(module.v_proj, x)), h)
    key, n = 1 - f, x.shape[0]
    state, out = x.new_zeros(h, module.head_dim, module.head_dim), []
    for t in range(n):
        state = f[:, t, :, None] * state + key[:, t, :, None] * i[:, t, None, :]
        out.append((o[:, t, None, :] @ state)[:, 0])
    out = torch.stack(out, dim=1)
    if not module.causal:
        later, reverse = [None] * n, torch.zeros_like(state)
        for t in reversed(range(n)):
            later[t] = (o[:, t, None, :] @ reverse)[:, 0]
            reverse = f[:, t, :, None] * (reverse + key[:, t, :, None] * i[:, t, None, :])
        out = out + torch.stack(later, dim=1)
    return affine(module.out_proj, layer_norm(module.output_norm.norm, merge_heads(out)))


BACKENDS = {
    "vanilla": vanilla,
    "elu": elu,
    "performer": performer,
    "cosformer": cosformer,
    "flash_quad": gated_attention_unit,
    "flash": gated_attention_unit,
    "ls": long_short,
    "norm_attention": norm_attention,
    "diag_attention": diag_attention,
    "lightning": lightning,
    "retnet": retnet,
    "gla": gla,
    "deltanet": lambda module, knobs, x: delta_rule_backend(module, knobs | {"gated": False}, x),
    "gated_deltanet": lambda module, knobs, x: delta_rule_backend(module, knobs | {"gated": True}, x),
    "mamba2": mamba2,
    "based": based,
    "hedgehog": hedgehog,
    "relu": relu_kernel(1),
    "relu2": relu_kernel(2),
    "hgrn2": hgrn2,
}


def resolve(name: str, knobs: dict) -> tuple[str, dict]:
    """A preset is DiagAttention in layers [0, L/2) and NormAttention in [L/2, L), with PAPER.md's knobs."""
    if name not in PRESETS:
        return name, knobs
    diag, norm = PRESETS[name]
    shared = {key: knobs[key] for key in ("pos", "bias")}
    if knobs["layer_index"] < knobs["n_layers"] // 2:
        return "diag_attention", full_knobs("diag_attention", shared | diag | {"block_size": knobs["block_size"]})
    return "norm_attention", full_knobs("norm_attention", shared | norm | {"chunk_size": knobs["chunk_size"]})


def reference_sequence(name: str, knobs: dict, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x[N, D]`` (one sequence, no padding) -> ``[N, D]``."""
    name, knobs = resolve(name, full_knobs(name, knobs))
    return BACKENDS[name](module, knobs, x)


def reference_forward(
    name: str, knobs: dict, module: nn.Module, x: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``x[B, N, D]`` -> ``[B, N, D]``: every sequence alone (its real tokens), zeros at padded positions."""
    outputs = []
    for b in range(x.shape[0]):
        real = torch.ones(x.shape[1], dtype=torch.bool, device=x.device) if padding_mask is None else ~padding_mask[b]
        out = torch.zeros_like(x[b])
        if real.any():
            out = out.index_put((real.nonzero()[:, 0],), reference_sequence(name, knobs, module, x[b][real]))
        outputs.append(out)
    return torch.stack(outputs)
