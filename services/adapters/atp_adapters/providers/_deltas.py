"""The deltas of one network read, merged into as few as possible, for every provider's decoder."""

from __future__ import annotations

from atp.common.v1 import chat_pb2


class DeltaBuilder:
    """Collects the deltas of one read, merging adjacent text and adjacent fragments of one tool call,
    so a batch carries few, larger deltas. Each choice's first delta gets role `assistant`.

    Annotations, refusals, logprobs and a choice's finish join the last delta of the current choice.
    Reasoning starts a new delta after text, tool calls, a signature (which ends a thinking block) or
    redacted reasoning (one opaque block), so blocks stay apart and in order.
    """

    __slots__ = ("_choice", "_deltas", "_many", "_roles_sent", "_text")

    def __init__(self) -> None:
        self._deltas: list[chat_pb2.Delta] = []
        self._text: list[str] = []
        self._roles_sent: set[int] = set()
        self._choice = 0
        # Whether any choice but 0 has appeared (n > 1); until then take() stays on its short path.
        self._many = False

    def text(self, piece: str) -> None:
        if piece:
            self._text.append(piece)

    def tool(self, index: int, call_id: str, call_type: str, name: str, arguments: str) -> None:
        self._flush_text()
        deltas = self._deltas
        if deltas and deltas[-1].tool_calls and deltas[-1].choice == self._choice:
            last = deltas[-1].tool_calls[-1]
            if last.index == index and not call_id and not name:
                last.arguments += arguments
                return
            delta = deltas[-1]
        else:
            delta = self._new()
        delta.tool_calls.add(index=index, id=call_id, type=call_type, function_name=name, arguments=arguments)

    def choice(self, index: int) -> None:
        """Later pieces belong to choice `index` (requests with n > 1)."""
        if index != self._choice:
            self._flush_text()
            self._choice = index
            self._many = True

    def reasoning(self, text: str = "", signature: str = "", redacted: str = "") -> None:
        """Visible reasoning, the signature that closes its block, or a redacted block's data."""
        if not (text or signature or redacted):
            return
        delta = self._open()
        # Reasoning joins only a delta of reasoning that is still open, so the order of blocks survives.
        if (
            delta.content
            or delta.tool_calls
            or delta.reasoning_signature
            or delta.redacted_reasoning
            or (redacted and delta.reasoning)
        ):
            delta = self._new()
        delta.reasoning += text
        delta.reasoning_signature += signature
        delta.redacted_reasoning += redacted

    def annotation(self, annotation: chat_pb2.Annotation) -> None:
        self._open().annotations.append(annotation)

    def refusal(self, text: str) -> None:
        if text:
            self._open().refusal += text

    def logprobs(self, logprobs: list[chat_pb2.TokenLogprob]) -> None:
        if logprobs:
            self._open().logprobs.extend(logprobs)

    def refusal_logprobs(self, logprobs: list[chat_pb2.TokenLogprob]) -> None:
        if logprobs:
            self._open().refusal_logprobs.extend(logprobs)

    def audio(self, audio: chat_pb2.AudioDelta) -> None:
        """A piece of an audio reply; pieces of one reply concatenate (data and transcript)."""
        merged = self._open().audio
        if audio.id:
            merged.id = audio.id
        if audio.expires_at:
            merged.expires_at = audio.expires_at
        merged.data += audio.data
        merged.transcript += audio.transcript

    def finish(self, reason: str) -> None:
        """The current choice has finished (requests with n > 1 finish each choice on its own)."""
        self._open().finish_reason = reason

    def _new(self) -> chat_pb2.Delta:
        delta = chat_pb2.Delta(choice=self._choice)
        self._deltas.append(delta)
        return delta

    def _open(self) -> chat_pb2.Delta:
        self._flush_text()
        deltas = self._deltas
        if deltas and deltas[-1].choice == self._choice:
            return deltas[-1]
        return self._new()

    def _flush_text(self) -> None:
        if self._text:
            delta = chat_pb2.Delta(content="".join(self._text))
            if self._choice:
                delta.choice = self._choice
            self._deltas.append(delta)
            self._text.clear()

    def take(self) -> list[chat_pb2.Delta]:
        """The deltas collected since the last call."""
        self._flush_text()
        if not self._deltas:
            return []
        out = self._deltas
        self._deltas = []
        roles_sent = self._roles_sent
        if not self._many:
            if not roles_sent:
                out[0].role = "assistant"
                roles_sent.add(0)
            return out
        for delta in out:
            if delta.choice not in roles_sent:
                delta.role = "assistant"
                roles_sent.add(delta.choice)
        return out
