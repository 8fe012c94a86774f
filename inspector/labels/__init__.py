"""Training samples and their labels: ``input_ids``, ``attention_mask`` and ``labels`` (-100 where the loss ignores
a token, unshifted) under each strategy, checked by an independent verifier, and the gradient weight of each token.

- ``spans``: find every message's content, reasoning and tool calls in the rendered text (no ``{% generation %}``
  tags needed), and where each assistant turn starts and ends;
- ``engine``: ``LabelEngine`` turns conversations into ``Sample``s (assistant-only, all-tokens, last-turn, session,
  split-turns, response-template), tokenizing all rendered texts in one batched call;
- ``plain_text``: plain-text prompt/completion records laid out as TRL trains them (prompt + completion + EOS, no
  chat template);
- ``adapt``: messages adapted to what the template reads (tool declarations, tool-call arguments);
- ``response_template``: TRL's completion-only collator's response-marker search, reproduced exactly;
- ``verify``: the perturbation verifier, which re-renders with one field replaced and diffs, using nothing of
  ``spans``;
- ``weights``: the weight each labeled token gets under each loss reduction, batching and packing.

Example: ChatML ``<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello<|im_end|>\\n`` under
assistant-only -> only ``Hello<|im_end|>`` carries labels; every other position is -100.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "engine": ["LabelEngine", "LabelOptions", "Sample", "SampleError", "STRATEGIES", "build_samples",
               "tokenize_batch"],
    "spans": ["Span", "Turn", "Layout", "locate"],
    "response_template": ["response_template_labels", "find_subsequence"],
    "verify": ["VERIFY_MODES", "Verification", "verify_sample", "verify_labels"],
    "weights": ["token_weights", "aggregate", "loss_targets"],
})
