"""The power quality domain: voltage, current, power factor, frequency and THD per phase; sags and swells."""
