"""One redaction mechanism for everything the platform stores, re-shows or logs.

Sensitive values in text or JSON are replaced by a token that keeps what is useful and hides the rest:
`<card ****1111 #3f2a9c>`, `<iban GB** ****5678 #…>`, `<email ***@example.com #…>`, `<phone ***67 #…>`,
`<secret aws #…>`. The `#` part is an HMAC of the value under the platform's key and a scope (a session or a
task), so one value gives one token within its scope (the model can refer to "the card ending 1111" and mean
one card) and nothing outside it can link or recover values.

Detection leans on well-kept validators rather than hand-written checksums: python-stdnum's Luhn and IBAN
checks, Google's libphonenumber matcher (`phonenumbers`), and detect-secrets' detectors for provider keys.
Candidates are found with loose patterns and kept only if the validator accepts them, which is what keeps
order numbers, ISO timestamps and ids out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import phonenumbers
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from stdnum import iban, luhn

# detect-secrets' detectors whose patterns name a provider's key format (the entropy and keyword detectors are
# left out: they flag hashes, ids and ordinary words).
_PROVIDER_DETECTORS = (
    "artifactory.ArtifactoryDetector", "aws.AWSKeyDetector", "azure_storage_key.AzureStorageKeyDetector",
    "discord.DiscordBotTokenDetector", "github_token.GitHubTokenDetector", "gitlab_token.GitLabTokenDetector",
    "jwt.JwtTokenDetector", "mailchimp.MailchimpDetector", "npm.NpmDetector", "openai.OpenAIDetector",
    "pypi_token.PypiTokenDetector", "sendgrid.SendGridDetector", "slack.SlackDetector",
    "square_oauth.SquareOAuthDetector", "stripe.StripeDetector", "telegram_token.TelegramBotTokenDetector",
    "twilio.TwilioKeyDetector",
)  # fmt: skip
# Keys whose whole value is a secret, whatever it looks like.
SECRET_KEYS = re.compile(
    r"(^|[_-])(password|passwd|secret|api[_-]?key|access[_-]?key|token|authorization|private[_-]?key)($|[_-])", re.I
)

_CARD_CANDIDATE = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-])")
# Issuer prefixes (IIN ranges) of the card networks: a Luhn-valid number outside them is not taken for a card.
_CARD_PREFIXES = re.compile(
    r"^(4|5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720|3[47]|30[0-5]|3[68]|35|6011|64[4-9]|65|62)"
)
_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![\w-])")
_BEARER = re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)")
# Seven digits or more with nothing but a phone number's separators between them: the only text worth handing
# to libphonenumber's matcher, which is by far the slowest detector.
_PHONE_LIKE = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6,}")
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")


FINDINGS_CACHED_UP_TO = 16_384
FINDINGS_CACHE_SIZE = 8_192
"""Distinct texts whose findings are remembered: at most about 130 MB of text, in practice a few MB."""


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str
    shown: str
    """What the token keeps of the value: the last four digits, the email's domain."""
    value: str


Detector = Callable[[str], Iterator[Finding]]
Found = dict[str, Any]
"""Token -> the value it replaced, as found (a string, or a JSON number or string a field held)."""
# Any token this module makes: `<kind[ shown] #hash>`.
TOKEN = re.compile(r"<[a-z][a-z0-9 _.-]*?(?: [^<>#]*)? #[0-9a-f]{8}>")


def _longest_valid(candidate: str, valid: Callable[[str], bool]) -> str | None:
    """The candidate, or the longest of its prefixes ending before a space or dash, that `valid` accepts: a loose
    pattern may run on into the next word or number ("GB82 WEST 1234 5698 7654 32 ok")."""
    while candidate:
        if valid(candidate):
            return candidate
        cut = max(candidate.rfind(" "), candidate.rfind("-"))
        if cut <= 0:
            return None
        candidate = candidate[:cut].rstrip(" -")
    return None


def _card_number(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIXES.match(digits)) and luhn.is_valid(digits)


def _cards(text: str) -> Iterator[Finding]:
    for match in _CARD_CANDIDATE.finditer(text):
        card = _longest_valid(match.group(), _card_number)
        if card is not None:
            digits = re.sub(r"\D", "", card)
            yield Finding(match.start(), match.start() + len(card), "card", f"****{digits[-4:]}", digits)


def _iban_number(candidate: str) -> bool:
    # The ISO 13616 checksum and the country's length, not the country's own BBAN checks: an account number a
    # national check would refuse is still one to hide.
    return bool(iban.is_valid(candidate, check_country=False))


def _ibans(text: str) -> Iterator[Finding]:
    for match in _IBAN_CANDIDATE.finditer(text):
        found = _longest_valid(match.group(), _iban_number)
        if found is not None:
            compact = iban.compact(found)
            shown = f"{compact[:2]}** ****{compact[-4:]}"
            yield Finding(match.start(), match.start() + len(found), "iban", shown, compact)


def _emails(text: str) -> Iterator[Finding]:
    for match in _EMAIL.finditer(text):
        yield Finding(match.start(), match.end(), "email", f"***@{match.group(1).lower()}", match.group().lower())


def _phones(region: str) -> Detector:
    def find(text: str) -> Iterator[Finding]:
        matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
        for match in matcher:
            number = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            yield Finding(match.start, match.end, "phone", f"***{number[-2:]}", number)

    return find


def _provider_detectors() -> list[tuple[str, list[re.Pattern[str]]]]:
    import importlib

    found = []
    for path in _PROVIDER_DETECTORS:
        module, name = path.rsplit(".", 1)
        detector: RegexBasedDetector = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)()
        found.append((module.removesuffix("_token").removesuffix("_key"), list(detector.denylist)))
    return found


def _secrets(text: str) -> Iterator[Finding]:
    for match in _BEARER.finditer(text):
        yield Finding(match.start(1), match.end(1), "secret", "bearer", match.group(1))
    for provider, patterns in _PROVIDERS:
        for pattern in patterns:
            for match in pattern.finditer(text):
                yield Finding(match.start(), match.end(), "secret", provider, match.group())
    for header in _PRIVATE_KEY_HEADERS:
        for match in header.finditer(text):
            start = text.rfind("-----", 0, match.start())
            end = _PRIVATE_KEY_END.search(text, match.end())
            stop = end.end() if end else len(text)  # an unterminated key: everything after its header
            yield Finding(max(start, 0), stop, "secret", "private key", text[max(start, 0) : stop])


_PROVIDERS = _provider_detectors()
_PRIVATE_KEY_HEADERS = list(PrivateKeyDetector().denylist)


def _configured(patterns: Mapping[str, str]) -> Detector:
    compiled = [(name, re.compile(pattern)) for name, pattern in patterns.items()]

    def find(text: str) -> Iterator[Finding]:
        for name, pattern in compiled:
            for match in pattern.finditer(text):
                yield Finding(match.start(), match.end(), name, name, match.group())

    return find


@dataclass(frozen=True)
class Redactor:
    """Redacts text and JSON values. `key` keys the tokens' HMAC; `scope` keeps one value's token stable within a
    session or task and unrelated across scopes."""

    key: bytes
    phone_region: str = "US"
    patterns: Mapping[str, str] = field(default_factory=dict)
    """Extra patterns, by name: every match is redacted as `<name #...>`."""

    @cached_property
    def detectors(self) -> list[tuple[Callable[[str, int], bool], Detector]]:
        """Each detector with a cheap test of whether it can find anything (most text has few digits, no @)."""
        return [
            (lambda text, digits: True, _secrets),
            (lambda text, digits: digits >= 13, _cards),
            (lambda text, digits: digits >= 8, _ibans),
            (lambda text, digits: "@" in text, _emails),
            (lambda text, digits: digits >= 7 and _PHONE_LIKE.search(text) is not None, _phones(self.phone_region)),
            (lambda text, digits: bool(self.patterns), _configured(self.patterns)),
        ]

    def findings(self, text: str) -> tuple[Finding, ...]:
        """What is sensitive in `text`, leftmost first, overlaps resolved in favour of the longer find.

        Remembered for texts up to FINDINGS_CACHED_UP_TO characters: a run's requests repeat the instructions, the
        tool descriptions and the earlier turns every time, and the detectors (the phone matcher above all) are the
        costliest part of redacting them. Findings depend on the text alone, never on the scope."""
        if len(text) > FINDINGS_CACHED_UP_TO:
            return self._findings(text)
        return self._remembered(text)

    @cached_property
    def _remembered(self) -> Callable[[str], tuple[Finding, ...]]:
        return lru_cache(maxsize=FINDINGS_CACHE_SIZE)(self._findings)

    def _findings(self, text: str) -> tuple[Finding, ...]:
        digits = sum(ch.isdigit() for ch in text)
        found = sorted(
            (finding for can, detector in self.detectors if can(text, digits) for finding in detector(text)),
            key=lambda f: (f.start, -(f.end - f.start)),
        )
        kept: list[Finding] = []
        for finding in found:
            if not kept or finding.start >= kept[-1].end:
                kept.append(finding)
        return tuple(kept)

    def token(self, finding: Finding, scope: str) -> str:
        digest = hmac.new(self.key, f"{scope}\0{finding.kind}\0{finding.value}".encode(), hashlib.sha256)
        shown = f" {finding.shown}" if finding.shown != finding.kind else ""
        return f"<{finding.kind}{shown} #{digest.hexdigest()[:8]}>"

    def text(self, text: str, *, scope: str, found: Found | None = None) -> str:
        """`text` with each sensitive value replaced by its token; `found`, if given, gets token -> value."""
        if not text:
            return text
        pieces, position = [], 0
        for finding in self.findings(text):
            token = self.token(finding, scope)
            pieces += [text[position : finding.start], token]
            position = finding.end
            if found is not None:
                found.setdefault(token, text[finding.start : finding.end])
        return "".join(pieces) + text[position:] if pieces else text

    def value(
        self, value: Any, *, scope: str, sensitive_paths: Iterable[str] = (), found: Found | None = None, path: str = ""
    ) -> Any:
        """A JSON value with every sensitive string redacted, every secret-named key's value and every
        `sensitive_paths` field ("address.line1") replaced whole, and long integers checked as card numbers.
        Redacting a redacted value changes nothing."""
        paths = frozenset(sensitive_paths)
        if isinstance(value, dict):
            return {
                name: self._member(str(name), item, scope, paths, found, f"{path}.{name}" if path else str(name))
                for name, item in value.items()
            }
        if isinstance(value, list):
            return [self.value(item, scope=scope, sensitive_paths=paths, found=found, path=path) for item in value]
        if isinstance(value, str):
            return self.text(value, scope=scope, found=found)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            redacted = self.text(str(value), scope=scope)
            if redacted != str(value) and found is not None:
                found.setdefault(redacted, value)
            return value if redacted == str(value) else redacted
        return value

    def _member(self, name: str, item: Any, scope: str, paths: frozenset[str], found: Found | None, path: str) -> Any:
        whole = path in paths or (SECRET_KEYS.search(name) is not None and isinstance(item, (str, int, float)))
        if not whole or item == "" or (isinstance(item, str) and TOKEN.fullmatch(item)):
            return self.value(item, scope=scope, sensitive_paths=paths, found=found, path=path)
        kind = "field" if path in paths else "secret"
        token = self.token(Finding(0, 0, kind, path if kind == "field" else name, json.dumps(item)), scope)
        if found is not None:
            found.setdefault(token, item)
        return token


@lru_cache(maxsize=1)
def platform_redactor() -> Redactor:
    """The platform's redactor, keyed from SECRET_KEY (tokens are stable across processes and restarts), with the
    phone region and extra patterns of the settings."""
    from django.conf import settings

    key = hmac.new(settings.SECRET_KEY.encode(), b"redaction tokens", hashlib.sha256).digest()
    return Redactor(key=key, phone_region=settings.REDACTION_PHONE_REGION, patterns=settings.REDACTION_PATTERNS)
