"""The exceptions koclip raises on purpose. Each message says what went wrong and what to do."""


class KoCLIPError(Exception):
    """Base class: anything koclip reports to a user as a plain message, never a traceback."""


class ModelUnavailableError(KoCLIPError):
    """A model could not be found locally and could not be downloaded."""


class UnknownModelError(KoCLIPError):
    """A name that is neither a registered model, a Hub id, nor an existing directory."""


class InvalidImageError(KoCLIPError):
    """An input that is not a readable image, or is too large to decode safely."""


class InvalidInputError(KoCLIPError):
    """Bad text input: an empty label list, an empty query, and the like."""


class GalleryError(KoCLIPError):
    """A gallery that is missing, incomplete, or made by another model."""
