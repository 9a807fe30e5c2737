FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY actors ./actors
RUN pip install --no-cache-dir ".[otlp]"
# The processes run as a user of their own, not root: a job's code (or a flaw in it) cannot rewrite the installed
# service or take the container's root. Only the reports folder is theirs to write.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin jobs \
    && mkdir -p /app/reports && chown jobs:jobs /app/reports
USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "service.web:app", "--host", "0.0.0.0", "--port", "8000"]
