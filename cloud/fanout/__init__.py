"""The fan-out: stored meter readings republished to the apps of every organisation that may read them."""

from cloud.fanout.access import ReadingAccess
from cloud.fanout.confirmations import Confirmations
from cloud.fanout.consumer import Delivery, FanoutConsumer

__all__ = ["Confirmations", "Delivery", "FanoutConsumer", "ReadingAccess"]
