"""Why a command failed at the edge: stable codes the cloud and applications can branch on."""

from __future__ import annotations

from enum import StrEnum

from broker.errors import GridwireError, Invalid, Unavailable


class ErrorCode(StrEnum):
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    UNSUPPORTED_COMMAND = "UNSUPPORTED_COMMAND"
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    DEVICE_UNREACHABLE = "DEVICE_UNREACHABLE"
    DEVICE_ERROR = "DEVICE_ERROR"
    EXPIRED = "EXPIRED"


class CommandFailed(GridwireError):
    """Raised by a command handler: the command failed for a reason it can name."""

    def __init__(self, code: ErrorCode | str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.transient = transient


class InvalidParameters(CommandFailed, Invalid):
    """The command's parameters do not fit the device or the command."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_PARAMETERS, message)


class DeviceUnreachable(CommandFailed, Unavailable):
    """The device did not answer; worth trying again later."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.DEVICE_UNREACHABLE, message, transient=True)
