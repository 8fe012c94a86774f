"""Chat templates written here, in the layouts of model families that are NOT in the shared corpus, to test the label
engine on templates it was never tuned on (see test_unseen_templates.py). Each is our own rendition of a family's
layout, written from its documented prompt format, not a copy of the publisher's file.
"""

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = none %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% if m['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' }}{% if loop.first and sys %}{{ '<<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' }}{% endif %}"
    "{{ m['content'] | trim + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}")

ZEPHYR = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + eos_token + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")

VICUNA = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'USER: ' + m['content'] + '\\n' }}"
    "{% else %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")

ALPACA = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ '### Instruction:\\n' + m['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Response:\\n' + m['content'] + eos_token + '\\n\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}")

GEMMA3 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\\n\\n' %}"
    "{% set msgs = messages[1:] %}{% else %}{% set first = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first if loop.first else '') + m['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")

PHI4 = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}")

CHATGLM3 = (
    "[gMASK]sop{% for m in messages %}{% if m['role'] == 'tool' %}{{ '<|observation|>\\n ' + m['content'] }}"
    "{% else %}{{ '<|' + m['role'] + '|>\\n ' + m['content'] }}"
    "{% for c in m.tool_calls or [] %}{{ c.function.name + '\\n' + c.function.arguments | tojson }}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")

INTERNLM2_TOOLS = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'tool' %}"
    "{{ '<|im_start|>environment name=<|plugin|>\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' + m['content'] }}"
    "{% for c in m.tool_calls or [] %}{{ '<|action_start|><|plugin|>\\n' + {'name': c.function.name, "
    "'parameters': c.function.arguments} | tojson + '<|action_end|>\\n' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

FUNCTIONARY_BLOCKS = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "{% if m['content'] %}{{ '<|from|>assistant\\n<|recipient|>all\\n<|content|>' + m['content'] + '\\n' }}{% endif %}"
    "{% for c in m.tool_calls or [] %}{{ '<|from|>assistant\\n<|recipient|>' + c.function.name + '\\n<|content|>' + "
    "c.function.arguments | tojson + '\\n' }}{% endfor %}{{ '<|stop|>\\n' }}"
    "{% elif m['role'] == 'tool' %}{{ '<|from|>' + (m['name'] or 'tool') + '\\n<|recipient|>all\\n<|content|>' + "
    "m['content'] + '\\n' }}{% else %}{{ '<|from|>' + m['role'] + '\\n<|recipient|>all\\n<|content|>' + m['content'] + "
    "'\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|from|>assistant\\n<|recipient|>' }}{% endif %}")

MISTRAL_TOOLS = (
    "{{ bos_token }}{% if tools %}{{ '[AVAILABLE_TOOLS] ' + tools | tojson + '[/AVAILABLE_TOOLS]' }}{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' + m['content'] + '[/SYSTEM_PROMPT]' }}"
    "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + '[/INST]' }}"
    "{% elif m['role'] == 'tool' %}{{ '[TOOL_RESULTS] ' + m['content'] + '[/TOOL_RESULTS]' }}"
    "{% elif m.tool_calls %}{{ '[TOOL_CALLS] [' }}{% for c in m.tool_calls %}{{ {'name': c.function.name, "
    "'arguments': c.function.arguments} | tojson }}{{ ', ' if not loop.last else '' }}{% endfor %}{{ ']' + eos_token }}"
    "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")

LLAMA4 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|header_start|>' + m['role'] + '<|header_end|>\\n\\n' }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}{{ '<|python_start|>' + c.function.name + '(' }}"
    "{% for k, v in c.function.arguments.items() %}{{ k + '=' + v | tojson }}{% endfor %}{{ ')<|python_end|>' }}"
    "{% endfor %}{% endif %}{{ m['content'] | trim + '<|eot|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\\n\\n' }}{% endif %}")

SEED_THINK = (
    "{% for m in messages %}{{ '<seed:bos>' + m['role'] + '\\n' }}"
    "{% if m['role'] == 'assistant' and m.reasoning_content %}"
    "{{ '<seed:think>' + m.reasoning_content | trim + '</seed:think>' }}{% endif %}"
    "{{ m['content'] + '<seed:eos>' }}{% endfor %}{% if add_generation_prompt %}{{ '<seed:bos>assistant\\n' }}"
    "{% endif %}")

QWEN3_LIKE = (
    "{% set ns = namespace(last_query=messages | length - 1) %}"
    "{% for m in messages[::-1] %}{% set i = messages | length - 1 - loop.index0 %}"
    "{% if m['role'] == 'user' and ns.last_query == messages | length - 1 %}{% set ns.last_query = i %}{% endif %}"
    "{% endfor %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{% set content = m['content'] %}"
    "{% set reasoning = m.reasoning_content or '' %}"
    "{% if '</think>' in content %}{% set reasoning = content.split('</think>')[0].split('<think>')[-1] | trim %}"
    "{% set content = content.split('</think>')[-1] | trim %}{% endif %}"
    "{{ '<|im_start|>assistant\\n' }}{% if loop.index0 > ns.last_query and reasoning %}"
    "{{ '<think>\\n' + reasoning | trim + '\\n</think>\\n\\n' }}{% endif %}{{ content | trim }}"
    "{% for c in m.tool_calls or [] %}{{ '\\n<tool_call>\\n' + {'name': c.function.name, 'arguments': "
    "c.function.arguments} | tojson + '\\n</tool_call>' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% elif m['role'] == 'tool' %}{{ '<|im_start|>user\\n<tool_response>\\n' + m['content'] + "
    "'\\n</tool_response><|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

HUNYUAN_LIKE = (
    "<|startoftext|>{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '<|extra_4|>' }}"
    "{% elif m['role'] == 'user' %}{{ m['content'] + '<|extra_0|>' }}"
    "{% else %}{{ m['content'] + '<|eos|>' }}{% endif %}{% endfor %}")

DEEPSEEK_V2 = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\\n\\n' }}"
    "{% else %}{{ 'Assistant: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

# writes a hint holding the final answer right before the real turn (issue 13: a preview gave a false error)
PREVIEW = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% if m['role'] == 'user' and loop.index0 == messages | length - 2 %}"
    "{{ '<|im_start|>hint\\nAim for: ' + messages[-1]['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

GRANITE_LIKE = (
    "{% for m in messages %}{{ '<|start_of_role|>' + m['role'] + '<|end_of_role|>' + m['content'] }}"
    "{% if m.tool_calls %}{{ '<|tool_call|>' + m.tool_calls | map(attribute='function') | list | tojson }}{% endif %}"
    "{{ '<|end_of_text|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}")

# every message as one JSON line: the text is JSON-escaped, so plain search does not find it
JSON_LINES = (
    "{% for m in messages %}{{ '{\"role\": ' + m['role'] | tojson + ', \"content\": ' + m['content'] | tojson + '}' }}"
    "{{ '<|eot|>\\n' if m['role'] == 'assistant' else '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '{\"role\": \"assistant\", \"content\": ' }}{% endif %}")

UNSEEN = {
    "llama2": LLAMA2, "zephyr": ZEPHYR, "vicuna": VICUNA, "alpaca": ALPACA, "gemma3": GEMMA3, "phi4": PHI4,
    "chatglm3": CHATGLM3, "internlm2-tools": INTERNLM2_TOOLS, "functionary-blocks": FUNCTIONARY_BLOCKS,
    "mistral-tools": MISTRAL_TOOLS, "llama4": LLAMA4, "seed-think": SEED_THINK, "qwen3-like": QWEN3_LIKE,
    "hunyuan-like": HUNYUAN_LIKE, "deepseek-v2": DEEPSEEK_V2, "preview": PREVIEW, "granite-like": GRANITE_LIKE,
    "json-lines": JSON_LINES,
}
