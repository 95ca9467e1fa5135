# One image for every Gridwire process; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY devices devices
COPY firmware_ota firmware_ota
COPY edge edge
COPY cloud cloud
COPY gridwire gridwire
RUN pip install --no-cache-dir '.[edge,cloud]'
ENTRYPOINT ["gridwire"]
