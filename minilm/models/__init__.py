"""Models with Hugging Face names and layouts."""
from .gpt import GPT, GPTConfig
from .output import ModelOutput
