"""A real SMTP server (aiosmtpd) in the test process whose answers depend on the recipient's address.

- `reject-...@`   RCPT gets 550 5.1.1 (refused for good)
- `busy-...@`     RCPT gets 450 4.2.1 (refused for now)
- `tempfail-...@` DATA gets 451 4.3.0 the first time a Message-ID is seen, 250 afterwards
- `spam-...@`     DATA gets 554 5.7.1
- anything else   accepted
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class ScriptedHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.tempfailed: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("reject-"):
            return "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown"
        if local.startswith("busy-"):
            return "450 4.2.1 <" + address + ">: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message_id = str(message["Message-ID"])
        locals_ = [r.partition("@")[0].lower() for r in envelope.rcpt_tos]
        if any(local.startswith("spam-") for local in locals_):
            return "554 5.7.1 Message rejected as spam"
        with self.lock:
            if any(local.startswith("tempfail-") for local in locals_) and message_id not in self.tempfailed:
                self.tempfailed.add(message_id)
                return "451 4.3.0 Temporary local problem, please try again"
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 Message accepted for delivery"

    def messages_with_id(self, message_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if str(r.message["Message-ID"]) == message_id]

    def wait_for(self, message_id: str, timeout_s: float = 15.0) -> Received:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.messages_with_id(message_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no message {message_id} within {timeout_s}s")


class SmtpServer:
    def __init__(self) -> None:
        self.handler = ScriptedHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname=HOST, port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
