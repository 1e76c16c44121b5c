"""Token rules: how strong a token must be off loopback, and the per-client token file.

Why a strength rule: a token is the only thing between the network and a studio's engine (and
its GPU). Off loopback, a guessable token ("a", a word, a date) is refused at start, not
warned about. The rule: at least as much guessing work as 32 random bytes (256 bits), judged
from the length and the character classes used, and not a run of a few repeated characters.
``secrets.token_urlsafe(32)`` (what the engine generates) and ``openssl rand -hex 32`` pass.

Why a token file: several retouchers share one engine; each gets a token of their own
(``name token`` per line), so their jobs are scheduled fairly and their limits are their own.

Also here: how the engine writes what must stay private (its token, TLS key, discovery file):
0700 folders and files created 0600, never world-readable for an instant.
"""
from __future__ import annotations

import math
import os
import re
import string
from pathlib import Path

from engine.errors import BadInput

MIN_BITS = 256
OWNER = "owner"             # the client name of the engine's own token (reserved in the file)
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_", string.punctuation)


def strength_bits(token: str) -> float:
    """A generous estimate of a token's guessing work in bits: length × log2(size of the
    character classes it uses). Repetition (few distinct characters) caps it."""
    if not token:
        return 0.0
    pool = 0
    for cls in _CLASSES:
        if any(c in cls for c in token):
            pool += len(cls)
    pool += sum(1 for c in set(token) if not any(c in cls for cls in _CLASSES))
    distinct = len(set(token))
    return len(token) * math.log2(max(2, min(pool, distinct * 4)))


def weak_reason(token: str) -> str:
    """'' for a strong token, else why it is weak (for the start-up error)."""
    if any(c.isspace() for c in token):
        return "it contains white space"
    bits = strength_bits(token)
    if bits < MIN_BITS:
        return (f"it has about {bits:.0f} bits of randomness, under the {MIN_BITS} of 32 random bytes "
                "(make one with: python3 -c \"import secrets; print(secrets.token_urlsafe(32))\")")
    return ""


def read_client_tokens(path: Path, owner_token: str) -> dict[str, str]:
    """``name token`` lines (``#`` comments, blank lines allowed) -> {name: token}. Refuses a
    file others can read, duplicate names or tokens, and weak tokens, in one line each."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as e:
        raise BadInput(f"cannot read the token file {path}: {e.strerror or e}") from None
    if os.name == "posix" and mode & 0o077:
        raise BadInput(f"the token file {path} is readable by other users: run chmod 600 {path}")
    out: dict[str, str] = {}
    seen = {owner_token}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _NAME.fullmatch(parts[0]):
            raise BadInput(f"{path}, line {n}: write `name token` (name: letters, digits, . _ @ -)")
        name, tok = parts
        if name in out or name == OWNER:
            raise BadInput(f"{path}, line {n}: the name {name} is used twice (or is the reserved '{OWNER}')")
        if tok in seen:
            raise BadInput(f"{path}, line {n}: this token is used twice: give every client its own")
        why = weak_reason(tok)
        if why:
            raise BadInput(f"{path}, line {n}: the token of {name} is too weak: {why}")
        out[name] = tok
        seen.add(tok)
    return out


# ------------------------------------------------------------------ private files
def private_dir(d: Path) -> None:
    """A folder only this user may enter (0700): the engine's token, TLS key and discovery live there."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        try:
            if d.stat().st_mode & 0o077:
                os.chmod(d, 0o700)
        except OSError:
            pass


def write_private(path: Path, text: str) -> None:
    """Atomic write of a 0600 file (created 0600, never world-readable for an instant)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
