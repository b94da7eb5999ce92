"""Bottleneck Explorer: what the intermediate layers of pretrained image networks make of your images.

The Python API (docs/python.md):

    import explorer
    comp = explorer.compare("sample:clothing", models=["mobilenet_v2", "resnet18"])
    comp.metrics, comp.similarity("cka"), comp.projection("resnet18:layer3"), comp.show()

Stability: the names in `__all__`, their arguments and the columns of the DataFrames they return
are the public surface; they change only with a note in docs/python.md. Everything else (the
modules below, the dashboard's internals) may change between versions.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.3.1"

__all__ = ["AnalysisRequest", "Comparison", "compare", "compare_features", "layers", "load", "models", "__version__"]

if TYPE_CHECKING:
    from .api import Comparison, compare, compare_features, layers, load, models
    from .request import AnalysisRequest

_WHERE = {"compare": "api", "compare_features": "api", "layers": "api", "load": "api", "models": "api",
          "Comparison": "api", "AnalysisRequest": "request"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """The API's names, imported when first used: `import explorer` stays instant, and the command
    line and the dashboard load only what they use."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
