"""Models with Hugging Face names and layouts."""
from .bert import (BertConfig, BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
                   BertForSequenceClassification, BertForTokenClassification, BertModel)
from .encoder_decoder import Seq2SeqTransformer, TransformerConfig
from .gpt import GPT, GPTConfig
from .output import ModelOutput
from .llama import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM
