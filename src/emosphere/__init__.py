"""emosphere: EmoSphere-SER speech emotion recognition.

Arousal, valence and dominance (1-7 scale) from speech with a fine-tuned
speech encoder, style pooling and an auxiliary classifier of the emotion's
region on a sphere. ``from emosphere import EmoSphereSER`` for the Python API.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EmoSphereSER", "__version__"]

if TYPE_CHECKING:
    from .model import EmoSphereSER


def __getattr__(name: str) -> Any:
    # Import torch and transformers only when the model is asked for, so the CLI starts fast.
    if name == "EmoSphereSER":
        from .model import EmoSphereSER

        return EmoSphereSER
    raise AttributeError(f"module 'emosphere' has no attribute {name!r}")
