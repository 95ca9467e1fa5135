"""Tests of the OMDP query web API."""
