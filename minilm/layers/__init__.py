"""Layers: objects that own Parameters and call ops."""
from .attention import CausalSelfAttention, MultiHeadAttention
from .base import Module, Parameter, new_param
from .block import PostLNBlock, PreLNBlock
from .feedforward import FeedForward
from .linear import Dropout, Embedding, LayerNorm, Linear
from .llama import LlamaDecoderLayer, RMSNorm, RotaryAttention, SwiGLUMLP
