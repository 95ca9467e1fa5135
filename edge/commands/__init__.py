"""The concentrator's command executor and the errors its handlers raise."""

from edge.commands.errors import CommandFailed, DeviceUnreachable, ErrorCode, InvalidParameters
from edge.commands.executor import CommandExecutor, CommandHandler, execute

__all__ = ["CommandExecutor", "CommandFailed", "CommandHandler", "DeviceUnreachable", "ErrorCode",
           "InvalidParameters", "execute"]
