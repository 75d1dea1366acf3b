"""One root exception for the whole platform, with a small documented tree.

UBIError
├── ConfigError          bad or missing configuration
├── StackError           a local service (Mosquitto, Kafka) could not be installed/started/reached
│   ├── KafkaAuthError   Kafka refused a principal's credentials (ubi/adapters/kafka.py; also a KafkaError)
│   └── DeliveryFailed   Kafka refused or never confirmed a record we sent (ubi/adapters/kafka.py; also a
│                        KafkaError, so a stage's retry loop restarts it)
├── ContractError        telemetry that breaks the device contract (carries a machine-readable reason)
├── ScoreFileError       a file `ubi score-file` cannot score, naming the file or vehicle (also a ValueError)
├── RulebookError        a rulebook refused by validation (carries file, key path and reason)
├── StoreError           DuckDB could not be written as asked
├── PricingError         pricing inputs that cannot be priced or reported on (e.g. no priced month, no claims)
│   └── BookError        a claims book or its model spec refused (every problem, with column and row)
├── PortalError          a policyholder request that cannot be met (unknown policy, refused sign-in)
└── PrivacyError         a privacy safeguard refused (erasure, audit log, consent)
    └── DatabaseKeyError the DuckDB file's encryption key is missing or wrong
"""

from __future__ import annotations


class UBIError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(UBIError):
    pass


class StackError(UBIError):
    pass


class ScoreFileError(UBIError, ValueError):
    """A bad input or output file for ``ubi score-file``: the message names the file (or vehicle) and the problem.
    Also a ValueError, which it was before it joined the tree."""


class ContractError(UBIError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RulebookError(UBIError):
    def __init__(self, problems: list[str], path: str = "<rulebook>") -> None:
        self.problems = problems
        self.path = path
        lines = "\n".join(f"  {path}: {p}" for p in problems)
        super().__init__(f"rulebook refused ({len(problems)} problem(s)):\n{lines}")


class StoreError(UBIError):
    pass


class PricingError(UBIError):
    """Pricing or an actuary tool cannot go on with the data it was given."""


class PortalError(UBIError):
    """A policyholder-facing request that cannot be met; ``reason`` is machine-readable where the caller branches on
    it (sign-in: unknown | expired | revoked), ``when`` the expiry or revocation time."""

    def __init__(self, message: str, reason: str = "", when: object = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.when = when


class PrivacyError(UBIError):
    """A privacy safeguard refused to go on: an unknown policy to erase, a broken audit log, a bad consent."""


class DatabaseKeyError(PrivacyError):
    """The DuckDB file cannot be opened: its encryption key is missing or wrong (the key is never printed)."""


class BookError(PricingError):
    """A claims book (or its model spec) refused as a whole: every problem found, each with its column and row."""

    def __init__(self, problems: list[str], path: str = "<book>") -> None:
        self.problems = problems
        self.path = path
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"book refused, nothing loaded ({len(problems)} problem(s), spec {path}):\n{lines}")
