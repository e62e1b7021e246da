"""How `kfp_ct.components` exports its components lazily, so that importing a component's core never imports kfp
(the core logic is plain Python, DESIGN.md): tune's trial workers and the model server load cores only, and kfp's
import costs each of them 0.45 s on a 2-core machine.

`kfp_ct.components.<name>` is the component, imported from `components/<name>/component.py` on first access (with
kfp); `kfp_ct.components.<name>.core` and the other modules of its package are plain modules, imported as
`from kfp_ct.components.<name> import core`.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable


def export_component(package: str, name: str) -> Callable[[str], object]:
    """The module `__getattr__` of a component's package: its component `name`, from its component.py."""

    def __getattr__(attr: str):
        if attr != name:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(f"{package}.component"), name)

    return __getattr__


class Catalog(types.ModuleType):
    """The class of the `kfp_ct.components` module. Each name in its `__all__` gives the component, imported on
    first access; importing a module of the component's package (a core) would otherwise set the package itself as
    that attribute, which this class refuses."""

    def __setattr__(self, attr: str, value) -> None:
        if isinstance(value, types.ModuleType) and attr in self.__all__:
            return  # the import system naming a component's package: the package stays in sys.modules only
        super().__setattr__(attr, value)

    def __getattr__(self, attr: str):
        if attr not in self.__all__:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        component = getattr(importlib.import_module(f"{self.__name__}.{attr}"), attr)
        super().__setattr__(attr, component)
        return component
