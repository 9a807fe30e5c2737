"""send_email against a real SMTP server (aiosmtpd in this process) and real workers."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from pydantic import NameEmail

from actors.email import send_email
from service.domain.errors import PermanentError
from service.domain.states import JobState
from service.kits import mail
from service.ops.jobs import Jobs
from service.store import keys
from service.web import app
from tests.actors.conftest import PrivateLane
from tests.support.smtp import HOST, SmtpServer, free_port
from tests.support.workers import WorkerProcess

FAST_RETRIES = {"retry_delays": [200], "retry_backoff": "fixed"}


def message_id(job_id: str) -> str:
    return f"<{job_id}@example.org>"


def test_an_email_is_delivered_with_a_message_id_derived_from_the_job_id(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send(
        send_email,
        to="ada@example.com",
        cc=["grace@example.com"],
        bcc="hidden@example.com",
        reply_to="replies@example.com",
        subject="Your report",
        text="Plain body",
        html="<p>HTML body</p>",
        headers={"X-Campaign": "weekly"},
    )
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.result == {
        "messageId": message_id(job_id),
        "accepted": ["ada@example.com", "grace@example.com", "hidden@example.com"],
        "refused": [],
        "alreadySent": False,
    }
    received = smtp_server.handler.wait_for(message_id(job_id))
    assert received.mail_from == "jobs@example.org"
    assert received.rcpt_tos == ["ada@example.com", "grace@example.com", "hidden@example.com"]
    headers = received.message
    assert headers["To"] == "ada@example.com"
    assert headers["Cc"] == "grace@example.com"
    assert headers["Bcc"] is None  # blind copies travel in the envelope only
    assert headers["Reply-To"] == "replies@example.com"
    assert headers["X-Campaign"] == "weekly"
    assert headers["From"] == "Job service <jobs@example.org>"
    body = received.message.get_body(("plain",))
    html = received.message.get_body(("html",))
    assert body is not None and body.get_content().strip() == "Plain body"
    assert html is not None and html.get_content().strip() == "<p>HTML body</p>"


def test_a_451_reply_is_retried_and_the_next_attempt_delivers_it_once(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send(send_email, to="tempfail-1@example.com", subject="Hi", text="x", options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.attempts == 2
    retried = [h for h in record.history if h.state is JobState.DELAYED]
    assert len(retried) == 1
    assert "451 4.3.0 Temporary local problem" in (retried[0].error or "")
    assert len(smtp_server.handler.messages_with_id(message_id(job_id))) == 1


def test_a_550_reply_fails_at_once_quoting_the_server(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send(send_email, to="reject-me@example.com", subject="Hi", text="x", options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.failedReason is not None
    assert record.failedReason.startswith("PermanentError: every recipient refused")
    assert "550 5.1.1 <reject-me@example.com>: Recipient address rejected: User unknown" in record.failedReason


def test_a_554_reply_to_the_message_fails_at_once_quoting_the_server(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send(send_email, to="spam-1@example.com", subject="Hi", text="x", options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.failedReason == "PermanentError: message refused: 554 5.7.1 Message rejected as spam"


def test_when_some_recipients_are_refused_the_result_lists_accepted_and_refused(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send(
        send_email, to=["ok@example.com", "reject-x@example.com"], cc="busy-y@example.com", subject="Hi", text="x"
    )
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 1
    assert record.result["accepted"] == ["ok@example.com"]
    refused = {r["address"]: (r["code"], r["reply"]) for r in record.result["refused"]}
    assert refused["reject-x@example.com"][0] == 550
    assert refused["reject-x@example.com"][1].startswith("550 5.1.1")
    assert refused["busy-y@example.com"][0] == 450
    assert smtp_server.handler.wait_for(message_id(job_id)).rcpt_tos == ["ok@example.com"]


def test_a_wrong_payload_from_a_foreign_client_fails_without_retries_naming_the_fields(
    jobs: Jobs, lane: PrivateLane, jobs_worker: WorkerProcess
) -> None:
    job_id = lane.send_raw("send_email", "email", {"to": "not-an-address", "subject": "Hi", "body": "x"})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    reason = record.failedReason or ""
    assert reason.startswith("InvalidPayload: invalid payload:")
    assert "to.0: value is not a valid email address" in reason
    assert "text: Field required" in reason
    assert "body: Extra inputs are not permitted" in reason


#: Characters that break a header line for Python's email package besides CR and LF.
LINE_BREAKERS = ["\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e", "\x00"]


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_a_line_breaking_character_in_a_header_value_is_422_at_enqueue_naming_the_field(jobs: Jobs, char: str) -> None:
    payload = {
        "to": "ada@example.com",
        "subject": f"Hello{char}Bcc: evil@example.com",
        "text": "x",
        "headers": {"X-Campaign": f"weekly{char}Bcc: evil@example.com"},
    }
    with TestClient(app) as client:
        response = client.post("/jobs/send_email", json=payload)
    assert response.status_code == 422, response.text
    problems = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    code = f"U+{ord(char):04X}"
    assert "must be a single line" in problems[("body", "subject")] and code in problems[("body", "subject")]
    assert problems[("body", "headers")].startswith("Value error, header 'X-Campaign' must be a single line")
    assert jobs.store.count() == 0


def test_a_tab_and_non_ascii_text_in_a_subject_are_accepted() -> None:
    send_email.validate({"to": "a@example.com", "subject": "Caf\u00e9\tweekly \u2603", "text": "x"})


def test_a_line_breaking_character_from_a_foreign_client_fails_at_once_in_the_worker(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess
) -> None:
    subject = lane.send_raw(
        "send_email", "email", {"to": "a@example.com", "subject": "Hi\x0bBcc: e@x.org", "text": "x"}
    )
    header = lane.send_raw(
        "send_email", "email", {"to": "a@example.com", "subject": "Hi", "text": "x", "headers": {"X-A": "1\u2028B: 2"}}
    )
    for job_id, where in ((subject, "subject: Value error, must be a single line"), (header, "header 'X-A' must")):
        record = jobs.wait(job_id, timeout_s=20)
        assert record.state is JobState.FAILED, record.failedReason
        assert record.attempts == 1  # not retried: another attempt would build the same message
        assert (record.failedReason or "").startswith("InvalidPayload: invalid payload:")
        assert where in (record.failedReason or "")
    assert smtp_server.handler.messages_with_id(message_id(subject)) == []


def test_the_message_builder_refuses_a_line_break_the_payload_check_did_not_see() -> None:
    outgoing = mail.Mail(to=["a@example.com"], subject="s", text="t", headers={"X-A": "1\x0c2"})
    with pytest.raises(ValueError, match="X-A must be a single line"):
        mail.compose(outgoing, sender=NameEmail("Tests", "tests@example.org"), message_id="<m@example.org>")
    with pytest.raises(ValueError, match="the name must be a single line"):
        mail.MailSettings.model_validate({"email_from": "Jobs\x85Team <jobs@example.org>"})


def test_a_worker_killed_after_the_server_accepted_a_message_does_not_send_it_again(
    jobs: Jobs, lane: PrivateLane, smtp_server: SmtpServer, jobs_worker: WorkerProcess, job_env: dict[str, str]
) -> None:
    jobs_worker.stop()  # only the pausing worker below may take the message
    try:
        # A short lease: the redelivered copy waits until the killed worker's lease could have lapsed.
        env = {**job_env, "EMAIL_TEST_PAUSE_AFTER_ACCEPT_MS": "30000", "JOB_LEASE_MS": "3000"}
        with lane.worker(env) as pausing:
            job_id = lane.send(send_email, to="once@example.com", subject="Only once", text="x")
            smtp_server.handler.wait_for(message_id(job_id))
            # Past the record of the acceptance, inside the pause, before any ack (polled: a loaded machine is slow).
            deadline = time.monotonic() + 15
            while '"accepted"' not in (jobs.store.client.get(keys.once("email", job_id)) or ""):
                assert time.monotonic() < deadline, "the acceptance was never recorded"
                time.sleep(0.05)
            assert jobs.get(job_id).state is JobState.ACTIVE
            pausing.kill()
    finally:
        jobs_worker.start()  # RabbitMQ redelivers the unacknowledged message to this one
    record = jobs.wait(job_id, timeout_s=60)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 2
    assert record.result["alreadySent"] is True
    assert record.result["accepted"] == ["once@example.com"]
    time.sleep(0.5)
    assert len(smtp_server.handler.messages_with_id(message_id(job_id))) == 1


# -- service.kits.mail on its own, against the same server -------------------------------------------------------------


def settings_for(port: int) -> mail.MailSettings:
    return mail.MailSettings(smtp_host=HOST, smtp_port=port, smtp_timeout_s=5)


def compose_to(*to: str) -> tuple[mail.Mail, EmailMessage]:
    outgoing = mail.Mail(to=list(to), subject="s", text="t")
    sender = NameEmail("Tests", "tests@example.org")
    return outgoing, mail.compose(outgoing, sender=sender, message_id="<direct@example.org>")


def test_an_unreachable_server_is_a_temporary_error() -> None:
    outgoing, message = compose_to("a@example.com")
    with pytest.raises(mail.TemporaryMailError, match=r"cannot reach SMTP server 127\.0\.0\.1"):
        mail.send(settings_for(free_port()), message, outgoing.recipients())


def test_a_4xx_refusal_of_every_recipient_is_temporary_and_a_5xx_one_permanent(smtp_server: SmtpServer) -> None:
    outgoing, message = compose_to("busy-1@example.com")
    with pytest.raises(mail.TemporaryMailError, match=r"450 4\.2\.1"):
        mail.send(settings_for(smtp_server.port), message, outgoing.recipients())
    outgoing, message = compose_to("reject-1@example.com", "busy-2@example.com")
    with pytest.raises(PermanentError, match=r"550 5\.1\.1"):
        mail.send(settings_for(smtp_server.port), message, outgoing.recipients())


def test_smtp_ssl_and_starttls_together_are_refused_naming_both() -> None:
    with pytest.raises(ValueError, match="SMTP_SSL and SMTP_STARTTLS exclude each other"):
        mail.MailSettings(smtp_ssl=True, smtp_starttls=True)
