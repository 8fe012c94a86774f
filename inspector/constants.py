"""Names and numbers shared by the whole core.

IGNORE_INDEX is the label PyTorch's ``CrossEntropyLoss`` skips (its default ``ignore_index``), and Hugging Face
causal-LM models shift labels themselves, so ``labels[i]`` is either ``IGNORE_INDEX`` or ``input_ids[i]``.

Example: input_ids [5, 9, 9, 2] with only the last two tokens trained -> labels [-100, -100, 9, 2].
"""

IGNORE_INDEX = -100

# Roles a normalized message can carry. Data formats map their own names onto these (see conversations.py).
ROLES = ("system", "user", "assistant", "tool")

# Segments a character (and so a token) of a rendered conversation belongs to. "template" is markup the chat
# template writes itself (headers, separators, end-of-turn tokens); the others are message text.
SEGMENTS = ("template", "system", "user", "assistant", "tool")
