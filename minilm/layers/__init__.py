"""Layers: objects that own Parameters and call ops."""
from .attention import CausalSelfAttention, MultiHeadAttention
from .base import Module, Parameter, new_param
from .feedforward import FeedForward
from .linear import Dropout, Embedding, LayerNorm, Linear
