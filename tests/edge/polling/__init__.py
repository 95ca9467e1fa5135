"""Tests of edge.polling."""
