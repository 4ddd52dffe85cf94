"""Reading image files.

ultralytics, once imported, replaces ``PIL.Image.open`` with a wrapper that tries to install a
package (pi-heif) when a file cannot be identified, and raises an import error where there is no
network. gligen-eval reads images with PIL's own opener, so a broken file is always a clear
``cannot read image`` error naming the file.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def pil_open(path: str | os.PathLike[str], *args: Any, **kwargs: Any):
    """``PIL.Image.open`` as PIL defines it, even after ultralytics patched it."""
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(path, *args, **kwargs)
