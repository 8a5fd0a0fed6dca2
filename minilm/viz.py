"""Plots people would rather look at than read. matplotlib is imported inside each function."""


def pyplot():
    """matplotlib.pyplot, imported on first use (minilm works without matplotlib until a plot
    is asked for)."""
    # No matplotlib.use() here: that would switch a notebook off its inline backend. The
    # command line picks the non-interactive "Agg" backend itself (minilm/__main__.py).
    import matplotlib.pyplot as plt
    return plt


_plt = pyplot           # the old private name, kept for code that still imports it


WRITE_FIGURES_ENV = "MINILM_WRITE_FIGURES"


def save_figure(fig, path, **savefig_kwargs):
    """Write `fig` to `path` only when figures are asked for explicitly; otherwise do nothing.

    The PNGs under notebooks/figures are tracked files that the chapters show. Running a
    notebook (by hand, in the tests, in a grader) must not rewrite them, so notebooks call
    this instead of fig.savefig. `python -m minilm figures` runs the notebooks with
    MINILM_WRITE_FIGURES=1, which is the one way the figures are regenerated. Returns True when
    the file was written."""
    import os
    if os.environ.get(WRITE_FIGURES_ENV, "") not in ("1", "true", "yes"):
        return False
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    return True


def plot_loss(history, path=None, title="training loss", ax=None):
    """history: Trainer.history (dicts with step, loss, optional eval_loss). Saves to `path`
    when given; returns the Axes."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], label="train", lw=1)
    ev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if ev:
        ax.plot(*zip(*ev), "o-", label="validation", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path)
        plt.close(ax.figure)
    return ax


def plot_attention(weights, tokens_q=None, tokens_k=None, ax=None, title=None):
    """A (T, S) attention map as a heatmap, queries down, keys across."""
    plt = pyplot()
    from .backend import to_numpy
    w = to_numpy(weights)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4), dpi=110)
    ax.imshow(w, cmap="viridis", vmin=0, vmax=max(float(w.max()), 1e-9))
    if tokens_k is not None:
        ax.set_xticks(range(len(tokens_k)), tokens_k, rotation=90, fontsize=7)
    if tokens_q is not None:
        ax.set_yticks(range(len(tokens_q)), tokens_q, fontsize=7)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    return ax
