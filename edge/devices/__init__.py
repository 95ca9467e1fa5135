"""MQTT-native device simulators (street lights) for tests, the demo and benchmarks."""
