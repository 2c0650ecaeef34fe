"""The scanner itself: what it takes for a card number or a canary, and that it fails the test a leak happens in."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx2
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from stdnum import luhn

from tests.agent_runtime.fake_openai import FakeEndpoint, responses_message
from tests.agent_runtime.fake_openai_server import scripted_server
from tests.lib.test_redaction import card
from tests.security_canaries import card_numbers, leaks, masked, observed, planted, request_as_sent, scanner

ROOT = Path(__file__).resolve().parents[3]


def test_the_settings_hold_the_planted_canaries_whatever_the_environment_says() -> None:
    canaries = planted()
    assert set(canaries) == {"SECRET_KEY", "REDACTION_VAULT_KEY", "OPENAI_API_KEY"}
    for name, value in canaries.items():
        assert getattr(settings, name) == value, f"{name} is not the planted canary"
    assert len(set(canaries.values())) == len(canaries)
    from memory.vault import vault_fernet

    sealed = vault_fernet().encrypt(b"value")
    assert Fernet(canaries["REDACTION_VAULT_KEY"].encode()).decrypt(sealed) == b"value", "the vault uses the canary"


@pytest.mark.parametrize("seed", range(20))
def test_generated_card_numbers_are_found_as_written(seed: int) -> None:
    number = card(random.Random(seed))
    digits = number.replace(" ", "")
    for text in (number, f"paid with {number}.", f'{{"card": "{number}"}}', number.replace(" ", "-")):
        assert [found[2] for found in card_numbers(text)] == [digits], text


@pytest.mark.parametrize(
    "text",
    [
        "task 0f8e2a4b-1c3d-4e5f-9a8b-7c6d5e4f3a2b",  # uuid
        "12345678-1234-5678-1234-567812345678",  # a uuid of digits only
        "created 1762345678901 ms, 1762345678901234567 ns",  # epoch times start with 1
        "cost 0.4111111111111111 usd",  # a decimal
        "trace 4bf92f3577b34da6a3ce929d0e0e4736, span 00f067aa0ba902b7",
        "order A-1001 for 4111111111111112",  # not Luhn-valid
        "input_tokens=41111 output_tokens=1111",
        "id 79927398713",  # Luhn-valid, too short
        "offset 411111111111111x1",  # part of a word
    ],
)
def test_ids_times_and_counts_are_not_taken_for_cards(text: str) -> None:
    assert list(card_numbers(text)) == []


def test_a_card_running_into_the_next_number_is_cut_back_to_it() -> None:
    number = "4111 1111 1111 1111"
    assert luhn.is_valid(number.replace(" ", ""))
    assert [found[2] for found in card_numbers(f"{number} 2027")] == ["4111111111111111"]


def test_canaries_their_fragments_and_cards_are_found_and_masked() -> None:
    canaries = {"SECRET_KEY": "canary-secret-x-123", "OTHER": "sk-abc"}
    text = "a canary-secret-x-123 b canary-secret-truncat c sk-abc d 4111-1111-1111-1111"
    assert [what for what, _, _ in leaks(text, canaries)] == [
        "secret canary SECRET_KEY",
        "part of a secret canary",
        "secret canary OTHER",
        "card number ****1111",
    ]
    assert masked(text, canaries) == "a <SECRET_KEY> b canary-secret-truncat c <OTHER> d <card ****1111>"


def test_a_canary_in_a_log_message_its_fields_or_its_traceback_is_found() -> None:
    key, api_key = planted()["SECRET_KEY"], planted()["OPENAI_API_KEY"]
    logger = logging.getLogger("tests.security.leaky")
    with observed() as seen:
        logger.warning("signing with %s", key)
        logger.info("calling the endpoint", extra={"endpoint_auth": f"Bearer {api_key}"})
        try:
            raise RuntimeError(f"vault key {planted()['REDACTION_VAULT_KEY']} refused")
        except RuntimeError:
            logger.exception("could not open the vault")
        logger.info("nothing to see here")
    assert len(seen.log_records) == 4
    found = [(finding.what, finding.where) for finding in seen.findings]
    where = "a log record (logger 'tests.security.leaky', {})"
    assert ("secret canary SECRET_KEY", where.format("WARNING")) in found
    assert ("secret canary REDACTION_VAULT_KEY", where.format("ERROR")) in found
    # The formatter's redaction hides a bearer token in a field named like a secret: nothing of the key remains.
    assert all("OPENAI_API_KEY" not in finding.what for finding in seen.findings)
    assert all(value not in str(finding) for finding in seen.findings for value in planted().values())


def test_a_card_in_a_log_line_is_redacted_before_the_scan_sees_it() -> None:
    number = card(random.Random(7))
    with observed() as seen:
        logging.getLogger("tests.security.cards").warning("customer paid with %s", number)
    assert seen.findings == [] and len(seen.log_records) == 1
    assert "<card ****" in seen.log_records[0]


def test_a_model_request_is_read_whole_tools_and_settings_included() -> None:
    from agents import FunctionTool, ModelSettings

    async def unused(_context: object, _arguments: str) -> str:
        return ""

    tool = FunctionTool(
        name="lookup_order",
        description="Look up an order. Internal token: T0",
        params_json_schema={"type": "object", "properties": {"x": {"description": "P0"}}},
        on_invoke_tool=unused,
    )
    settings_ = ModelSettings(extra_headers={"authorization": "H0"}, extra_body={"user": "B0"})
    text = request_as_sent(("I0", [{"role": "user", "content": "U0"}], settings_, [tool], None, []), {})
    for part in ("I0", "U0", "T0", "P0", "B0"):
        assert part in text
    assert "H0" not in text, "headers go to the endpoint, not to the model"


def test_a_leak_fails_the_test_it_happened_in_and_the_summary_counts_it(tmp_path: Path) -> None:
    """The plugin in a pytest of its own: a test that logs the secret key fails, its neighbour passes."""
    (tmp_path / "test_inner.py").write_text(
        "import logging\n"
        "from django.conf import settings\n\n"
        "def test_leaks():\n"
        "    logging.getLogger('leaky').warning('the key is %s', settings.SECRET_KEY)\n\n"
        "def test_clean():\n"
        "    logging.getLogger('clean').warning('nothing to see')\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    plugin = ["-p", "no:cacheprovider", "-p", "tests.security_canaries", "--ds", "config.test_settings"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-q", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    assert "FAILED " in output and "test_inner.py::test_leaks" in output, output
    assert "secret canary SECRET_KEY appeared in a log record (logger 'leaky', WARNING)" in output, output
    reported = next(line for line in output.splitlines() if "appeared in" in line)
    assert "the key is <SECRET_KEY>" in reported and planted()["SECRET_KEY"] not in reported, "the report masks it"
    assert "log records scanned, 1 findings" in output, output


def test_the_session_scans_traffic() -> None:
    """By this point of any session something was scanned: the counters are the plugin's own, not a test's."""
    with observed():
        logging.getLogger("tests.security").info("counted")
    assert scanner().log_records > 0


def test_what_the_fake_endpoints_receive_is_scanned() -> None:
    body = {"model": "gpt-test", "input": [{"role": "user", "content": f"key {planted()['OPENAI_API_KEY']}"}]}
    with observed() as seen:
        FakeEndpoint([responses_message("ok", (1, 1))]).handle(
            httpx2.Request("POST", "http://llm.test/v1/responses", json=body)
        )
        with scripted_server([responses_message("ok", (1, 1))]) as server:
            request = urllib.request.Request(f"{server.base_url}/responses", data=json.dumps(body).encode())
            urllib.request.urlopen(request, timeout=10).read()
    assert [(finding.what, finding.where) for finding in seen.findings] == [
        ("secret canary OPENAI_API_KEY", "a request body to the fake OpenAI endpoint (/v1/responses)"),
        ("secret canary OPENAI_API_KEY", f"request body #1 to the scripted OpenAI server at {server.base_url}"),
    ]


def test_the_log_files_of_worker_processes_are_scanned(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    number = card(random.Random(3))
    log.write_text(f'{{"message": "ready."}}\nTraceback: charged {number}\n')
    with observed() as seen:
        scanner().worker_logs.append(log)  # as tests/workers.py's _spawn does for each process it starts
        scanner().scan_worker_logs()
    assert [(finding.what, finding.where) for finding in seen.findings] == [
        (f"card number ****{number.replace(' ', '')[-4:]}", "worker log worker-0.log, line 2")
    ]
    assert number not in str(seen.findings[0])
