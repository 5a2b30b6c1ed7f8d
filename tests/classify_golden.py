"""Recorded answers of the classifier, to hold its speed-ups to the answers it gave before.

    .venv/bin/python tests/classify_golden.py   # rewrites tests/data/classify_golden.tsv

The cases are every row of the three labelled files in ``tests/data`` (as given, and once more
with no code and no status, so that the reply is pulled out of the text), then ``GENERATED``
texts from a generator seeded with ``SEED``: words and phrases of the built-in rules' patterns
(as they were when the file was first written, kept in ``PHRASES`` so that a change of the
rules leaves the cases as they are), mail systems' wrapper phrases, reply codes, statuses,
addresses, IP addresses, punctuation, upper case and a few non-ASCII letters, mixed at random,
with a code and a status drawn at random (``None`` among them). Each line of the file is one
case: its number, a CRC-32 of its input (so that a changed generator shows as such, not as
changed answers), then what ``Classifier(builtin_rules(), remember=0).explain`` answered: the
category, a CRC-32 of the rule as written (``-``: none; not its line number, so that a rule
added elsewhere changes no answer), the code and status the rules were given, and the embedded
reply found (wrapper, command, host, code, status, CRC-32 of its text).
``tests/test_classify.py`` checks that the classifier still gives every answer recorded here.
The file was first written with the code of the ``classify`` merge (1ddc62c), before the
classifier was made faster; it is written anew when the rules change, once every answer that
changed has been checked by hand.
"""

from __future__ import annotations

import csv
import random
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

from mta_logging.classify import Classifier, builtin_rules

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "classify_golden.tsv"
PHRASES = DATA / "classify_golden_phrases.txt"
LABELLED = ("bounce_samples.tsv", "bounce_sisimai_train.tsv", "bounce_extra.tsv")
SEED = 18
GENERATED = 4000

Case = tuple[int | None, str | None, str]

_WRAPPERS = (
    "SMTP error from remote mail server after RCPT TO:<{a}>: host {h} [{ip}]: {r}",
    "host {h} [{ip}]: SMTP error from remote server after end of data: {r}",
    "host {h}[{ip}] said: {r} (in reply to RCPT TO command)",
    "host {h}[{ip}] refused to talk to me: {r}",
    "{ip} does not like recipient. Remote host said: {r} Giving up on {ip}.",
    "Connected to {ip} but sender was rejected. Remote host said: {r}",
    "Remote host said: {r} [RCPT_TO]",
    "Remote Server returned '{r}'",
    "Remote Server returned '<{h} #5.0.0 smtp; {r}>'",
    "<{h} #5.1.1 smtp;{r}>",
    "#{r} ##",
    "The error that the other server returned was: {r}",
    "The response from the remote server was: {r}",
    "The response was: {r}",
    ">>> RCPT To:<{a}> <<< {r}",
    "Diagnostic-Code: smtp; {r}",
    "smtp;{r}",
    "the server replied: {r}",
    "{h} says: {r}",
    "Delay reason: SMTP error from remote mailer after MAIL FROM:<{a}> SIZE=1234: {r}",
    "{r}",
    "{r}",
    "{r}",
)
_FILLER = ("the", "a", "to", "is", "not", "of", "your", "message", "mail", "please", "see",
           "for", "and", "has", "been", "you", "from", "our", "this", "server", "at", "on")
_ODD = ("\u212a", "é", "ü", "ß", "İ", "—", "«", "»", "\t", "\n", "\r\n", "  ", "...", ";",
        ":", "(", ")", "[", "]", "<", ">", "'", '"', "#", "-", "_", "/", "=", "%")
_CODES = (None, None, 421, 450, 451, 452, 500, 530, 550, 551, 552, 553, 554, 571)
_STATUSES = (None, None, "", "5.0.0", "4.0.0", "5.1.1", "5.1.2", "5.2.2", "4.2.2", "5.7.1",
             "4.7.1", "5.4.4", "4.4.1", "5.5.0", "5.7.26", "5.3.0", "4.4.7", "5.1.10")


def labelled() -> list[Case]:
    """The rows of the labelled files, as given and without code and status."""
    cases: list[Case] = []
    for name in LABELLED:
        with open(DATA / name, encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE):
                code = row["code"].strip()
                cases.append(((int(code) if code else None), row["enhanced"].strip() or None,
                              row["text"]))
                cases.append((None, None, row["text"]))
    return cases


def rule_phrases() -> list[str]:
    """Words and multi-word phrases of the built-in rules' patterns (what ``PHRASES`` holds,
    from the rules of the day it was written)."""
    phrases: set[str] = set()
    for rule in builtin_rules():
        if rule.text is not None:
            source = re.sub(r"\\.|\[[^\]]*\]|\(\?[:=!<]*|[()?*+{}\d,^$|.]", "|", rule.text.pattern)
            phrases.update(part.strip() for part in source.split("|") if len(part.strip()) > 2)
    return sorted(phrases)


def _vocabulary(texts: list[str]) -> tuple[list[str], list[str]]:
    """The phrases of ``PHRASES``, and words of the labelled texts."""
    phrases = PHRASES.read_text(encoding="utf-8").splitlines()
    words = sorted({word for text in texts for word in text.split()})
    return phrases, words


def generated(texts: list[str], seed: int = SEED, count: int = GENERATED) -> Iterator[Case]:
    """``count`` random cases, the same for the same ``seed`` and ``texts``."""
    rng = random.Random(seed)
    phrases, words = _vocabulary(texts)
    for _ in range(count):
        pieces: list[str] = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            if kind < 0.3:
                pieces.append(rng.choice(phrases))
            elif kind < 0.55:
                pieces.append(rng.choice(words))
            elif kind < 0.75:
                pieces.append(rng.choice(_FILLER))
            elif kind < 0.82:
                pieces.append(rng.choice(_ODD))
            elif kind < 0.87:
                pieces.append(f"{rng.choice(_CODES[2:])}{rng.choice((' ', '-'))}"
                              f"{rng.choice(_STATUSES[3:])}")
            elif kind < 0.92:
                pieces.append(f"<user{rng.randint(0, 999)}@example{rng.randint(0, 9)}.org>")
            elif kind < 0.96:
                pieces.append(".".join(str(rng.randint(0, 255)) for _ in range(4)))
            else:
                pieces.append(rng.choice(texts)[: rng.randint(5, 200)])
        body = " ".join(pieces)
        if rng.random() < 0.25:
            body = body.upper() if rng.random() < 0.5 else body.title()
        if rng.random() < 0.5:
            body = f"{rng.choice(_CODES[2:])} {rng.choice(_STATUSES[3:] + ('',))} {body}"
        text = rng.choice(_WRAPPERS).format(
            a=f"jane{rng.randint(0, 99)}@example.com", h=f"mx{rng.randint(0, 9)}.example.net",
            ip=f"192.0.2.{rng.randint(0, 255)}", r=body)
        yield rng.choice(_CODES), rng.choice(_STATUSES), text


def cases() -> list[Case]:
    """Every case of the recording, in order."""
    found = labelled()
    return found + list(generated(sorted({text for _, _, text in found})))


def checksum(text: str) -> str:
    """A short digest of ``text`` (CRC-32, 8 hex digits)."""
    return f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"


def answer(classifier: Classifier, case: Case) -> list[str]:
    """What the file records of one case: see the module's docstring."""
    verdict = classifier.explain(*case)
    reply = verdict.found.reply
    line = "-" if verdict.rule is None else checksum(verdict.rule.line)
    return [checksum(repr(case)), verdict.category, line, str(verdict.code),
            str(verdict.enhanced), verdict.found.wrapper or "-", verdict.found.command or "-",
            verdict.found.host or "-", str(reply.code), str(reply.enhanced),
            checksum(reply.text)]


def main(argv: list[str] | None = None) -> None:
    """Rewrite ``GOLDEN``; with ``--phrases``, first ``PHRASES`` from the rules as they are now
    (which changes the generated cases: every answer must then be checked anew)."""
    if "--phrases" in (sys.argv[1:] if argv is None else argv):
        PHRASES.write_text("\n".join(rule_phrases()) + "\n", encoding="utf-8")
    classifier = Classifier(builtin_rules(), remember=0)
    with open(GOLDEN, "w", encoding="utf-8") as stream:
        for number, case in enumerate(cases()):
            stream.write("\t".join([str(number), *answer(classifier, case)]) + "\n")


if __name__ == "__main__":
    main()
