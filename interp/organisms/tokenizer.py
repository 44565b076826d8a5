"""The organisms' word-level tokenizer, with a chat template, as a Hugging Face tokenizer.

Every word of the world is one token; user text with words outside the world maps to
``<unk>``. Like Llama's tokenizer it prepends ``<bos>`` when asked to add special tokens, and
its chat template renders a conversation exactly as the pretraining chats are written::

    <bos> <|user|> how do i bake ? <|assistant|> bake : sure . ... <eos>
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from interp.organisms import world

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ ' <|user|> ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ ' <|assistant|> ' + message['content'] + ' ' + eos_token }}"
    "{% else %}{{ raise_exception('the organisms only know user and assistant messages') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <|assistant|>' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer over the world's vocabulary (deterministic: the vocabulary is sorted).

    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("how do i bake ?").input_ids)
    ['<bos>', 'how', 'do', 'i', 'bake', '?']
    """
    vocab = {w: i for i, w in enumerate(world.vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=world.UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{world.BOS} $A", pair=f"{world.BOS} $A $B", special_tokens=[(world.BOS, vocab[world.BOS])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=world.BOS,
        eos_token=world.EOS,
        pad_token=world.PAD,
        unk_token=world.UNK,
        additional_special_tokens=[world.USER, world.ASSISTANT],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
