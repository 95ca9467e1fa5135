from tests.cloud.api.conftest import api  # noqa: F401 - the consumption API on the same influxd database
