"""The chat template exported with every model: Qwen2.5-VL's ChatML with images, MiMo-VL's reasoning turns.

Messages are ``{"role", "content"}`` with content a string or a list of ``{"type": "text", "text"}`` /
``{"type": "image"}`` (``{"type": "video"}``) items; each image becomes ``<|vision_start|><|image_pad|>
<|vision_end|>``, which the processor expands to one ``<|image_pad|>`` per merged patch. Earlier assistant
turns keep only their answer (the text after ``</think>``), as MiMo-VL trains on them; with
``enable_thinking=False`` the generation prompt closes an empty ``<think></think>`` so the model answers directly.
"""

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' and '</think>' in message['content'] %}"
    "{{ message['content'].split('</think>')[-1].lstrip('\\n') }}"
    "{% else %}"
    "{{ message['content'] }}"
    "{% endif %}"
    "{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' or 'video' in item %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in item %}"
    "{{ item['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n"
    "{% endif %}"
    "{% endif %}"
)
