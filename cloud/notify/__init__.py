"""Webhooks to applications: a durable outbox, signed POSTs and the delivery loop.

What goes into the outbox is decided by the domain layer's results consumer
(``cloud/domains/results_consumer.py``); this package only keeps and delivers it.
"""
