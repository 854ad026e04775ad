"""Your own model or dataset, named by import path: `package.module:function`.

A name with a colon is imported rather than looked up in a registry, so a network or a dataset
rewind does not ship plugs in without editing rewind/. The contracts are those of the built-ins:

- a model builder is called as `build(input_shape, num_classes)` and returns a `torch.nn.Module`;
  rewind seeds torch's generator before the call, so the same seed gives the same weights. Its
  conv and linear weights are the prunable ones.
- a dataset loader is called as `load(split_seed)` and returns a `rewind.data.Dataset` (train and
  test splits, `num_classes`); rewind holds the validation split out of its test split.

Every way an import path can be wrong is one RewindError line naming the path.
"""

import importlib
import re
from collections.abc import Callable

from rewind import RewindError

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def is_import_path(name: str) -> bool:
    return ":" in name


def load_callable(path: str) -> Callable:
    """The callable `package.module:function` names."""
    if not IMPORT_PATH.match(path):
        raise RewindError(f"{path!r} is not an import path of the form package.module:function")
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise RewindError(f"{path!r}: no module named {err.name!r} (is its folder on the path?)") from None
    except Exception as err:  # the plug-in's own import failed: a syntax error, a missing dependency
        raise RewindError(f"{path!r}: importing {module_name} failed: {type(err).__name__}: {err}") from None
    if not hasattr(module, attribute):
        raise RewindError(f"{path!r}: module {module_name} has no {attribute!r}")
    found = getattr(module, attribute)
    if not callable(found):
        raise RewindError(f"{path!r}: {attribute} is a {type(found).__name__}, not a function")
    return found
