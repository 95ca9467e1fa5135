"""Dead letters: messages the cloud could not accept, kept with the reason."""

from cloud.deadletters.store import DeadLetterStore

__all__ = ["DeadLetterStore"]
