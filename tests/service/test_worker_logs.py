"""Worker log lines go straight to stderr when short enough to stay whole, and through Dramatiq's pipe otherwise."""

from __future__ import annotations

import io
import logging
import os
import select

from service.logs import DirectLines, JsonFormatter


def test_short_lines_go_to_the_descriptor_and_long_ones_to_the_fallback() -> None:
    read_end, write_end = os.pipe()
    fallback = io.StringIO()
    stream = DirectLines(fallback, fd=write_end)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.worker_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("job completed")
        logger.warning("x" * (select.PIPE_BUF * 2))
    finally:
        logger.removeHandler(handler)
        os.close(write_end)
    direct = os.read(read_end, 65536).decode()
    os.close(read_end)
    assert direct.count("\n") == 1 and '"msg": "job completed"' in direct
    assert fallback.getvalue().count("\n") == 1 and "x" * select.PIPE_BUF in fallback.getvalue()
