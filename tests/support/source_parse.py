"""ast.parse on a thread of its own, for the tests that read the source tree."""

from __future__ import annotations

import ast
import threading


def parse_source(source: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source, filename)` on a fresh thread.

    CPython 3.11.7 now and then fails `ast.parse` of a small module with "AST constructor recursion
    depth mismatch" once earlier code on the same thread has left the thread's recursion count off (seen
    after some subsets of this suite, never in CI's order, not reproduced on demand); a new thread
    starts from a count of its own.
    """
    result: list[ast.Module | BaseException] = []

    def parse() -> None:
        try:
            result.append(ast.parse(source, filename))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=parse, name="ast-parse")
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
