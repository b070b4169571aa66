"""A small hand-written asyncio SMTP server on loopback that offers PIPELINING.

Fast enough that the sender is what a benchmark measures (aiosmtpd tops out near
250 copies/s of 50 KB), and explicit about pipelining: it notes which commands came
in each read, and with hold_replies it answers MAIL and RCPT only once a later
command arrives, so a client that waits for each reply before the next command
(one that does not pipeline) waits in vain.

Refusals by the recipient's local part: nobody* 550 at RCPT, busy* 451 at RCPT,
closing* 421 at RCPT and the connection closed, nodata* 554 to DATA, spam* 550 at
the end of data; and by the sender's: refused* 553 and login* 530 at MAIL.
With lax_data it answers 354 to DATA even when no recipient was accepted.

It misbehaves on demand too, by the recipient's local part, for testing a client
against a hostile server: garbled* gets a line that is no reply at RCPT; longline* a
250 at RCPT whose one line runs 100 KB, manylines* a 250 of 5,000 continuation lines
(100 KB), endless* 100 KB that never end a line and then silence; chatty* an unasked
reply after the one to its content; silent* the 354 and then no answer to anything;
stalled* the 354 and then nothing read any more (a big copy fills the socket);
hangup* the 354 and then the connection closed; shutdown* 421 at the end of data and
the connection closed. `greeting` is what it says first on each connection, and
paused() holds it still while a client writes.

Run as a program (`python -m tests.smtp_sink`) it prints its port and then, for
each line read on standard input ("stats" or "reset"), one line of JSON counts
(with its CPU seconds since the last reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

CRLF = b"\r\n"
END = b"\r\n.\r\n"
MAX_LINE = 4096
GREETING = b"220 sink.example ESMTP\r\n"
# The local parts that make it misbehave (see above).
HOSTILE = (
    *("garbled", "longline", "manylines", "endless", "chatty"),
    *("silent", "stalled", "hangup", "shutdown"),
)
LONG = 100_000


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes  # as stored: dot-stuffing undone, ending in CRLF


@dataclass
class Counts:
    messages: int = 0
    recipients: int = 0
    personalised: int = 0  # copies whose content names their recipient
    refused: int = 0
    connections: int = 0
    first: float = 0.0  # when the first MAIL of the count arrived (monotonic)
    last: float = 0.0  # when the last accepted message ended


@dataclass
class Sink:
    pipelining: bool = True
    hold_replies: bool = False
    lax_data: bool = False
    keep: bool = True  # keep each message's content (tests); off for benchmarks
    close_after_each: bool = False  # hang up after accepting a message, as idle servers do
    greeting: bytes = GREETING
    messages: list[Received] = field(default_factory=list)
    reads: list[list[str]] = field(default_factory=list)  # the commands of each read
    commands: list[str] = field(default_factory=list)  # every command verb, in order
    counts: Counts = field(default_factory=Counts)
    # MAIL commands that came in the same read as the end of the content before them
    # (a client announcing its next copy: RFC 2920 3.1).
    announced: int = 0
    on_message: Callable[[Received], None] | None = None
    port: int = 0
    # Connections no longer read (stalled*): they would not see the client hang up.
    _stalled: list[asyncio.Transport] = field(default_factory=list, repr=False)

    # -- running in a thread of its own (tests) ---------------------------------

    def __enter__(self) -> Sink:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(self.serve())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Reads and answers nothing inside the block (its loop waits), so everything a
        client writes meanwhile is there to be read at once when it ends."""
        waiting, go = threading.Event(), threading.Event()

        def wait() -> None:
            waiting.set()
            go.wait(10)

        self._loop.call_soon_threadsafe(wait)
        waiting.wait(10)
        try:
            yield
        finally:
            go.set()

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for transport in self._stalled:
                transport.close()
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def serve(self) -> asyncio.Server:
        server = await asyncio.get_running_loop().create_server(
            lambda: _Session(self), "127.0.0.1", self.port
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


class _Session(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.in_data = False
        self.scanned = 0  # bytes of content already searched for its end
        self.held: list[bytes] = []
        self.muted = False  # reads and answers nothing more
        self.reset()

    def reset(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.refuse_data = self.refuse_content = False
        self.hostile = ""  # how this transaction misbehaves: one of HOSTILE, or not

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink.counts.connections += 1
        transport.write(self.sink.greeting)

    def data_received(self, data: bytes) -> None:
        if self.muted:
            return
        self.buf += data
        replies: list[bytes] = []
        verbs: list[str] = []
        closing = ended = False
        while not closing:
            if self.in_data:
                if self.buf[:3] == b".\r\n":
                    end = -2  # no content at all
                else:  # look only where the end could be now: a 50 KB copy comes in pieces
                    # From the back: content holds no END (it is dot-stuffed) and what
                    # may follow it in this read is commands, so the last is the first,
                    # found without a pass over the whole copy.
                    end = self.buf.rfind(END, max(0, self.scanned - len(END)))
                if end == -1:
                    self.scanned = len(self.buf)
                    break
                self.in_data = False
                reply, closing = self.message(end)
                replies.append(reply)
                del self.buf[: end + 5]
                closing |= self.sink.close_after_each
                ended = True
                continue
            eol = self.buf.find(CRLF)
            if eol == -1:
                if len(self.buf) > MAX_LINE:
                    replies.append(b"500 5.5.6 line too long\r\n")
                    closing = True
                break
            line = bytes(self.buf[:eol]).decode("utf-8", "replace")
            del self.buf[: eol + 2]
            verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
            verbs.append(verb)
            self.sink.commands.append(verb)
            self.sink.announced += ended and verb == "MAIL"
            reply, closing = self.command(verb, line)
            if self.sink.hold_replies and verb in ("MAIL", "RCPT") and not self.muted:
                self.held.append(reply)
                continue
            replies.extend(self.held)
            self.held = []
            replies.append(reply)
            if self.muted:
                break
        if verbs:
            self.sink.reads.append(verbs)
        if closing:  # whatever was withheld is said (after what came before it) first
            replies, self.held = replies + self.held, []
        if replies:
            self.transport.write(b"".join(replies))
        if closing:
            self.transport.close()

    def command(self, verb: str, line: str) -> tuple[bytes, bool]:
        if verb == "EHLO":
            offers = ["sink.example", "8BITMIME", "SIZE 100000000", "SMTPUTF8"]
            if self.sink.pipelining:
                offers.append("PIPELINING")
            text = "".join(f"250-{o}\r\n" for o in offers[:-1]) + f"250 {offers[-1]}\r\n"
            return text.encode(), False
        if verb in ("HELO", "NOOP"):
            return b"250 OK\r\n", False
        if verb == "RSET":
            self.reset()
            return b"250 2.0.0 reset\r\n", False
        if verb == "QUIT":
            return b"221 2.0.0 bye\r\n", True
        if verb == "MAIL":
            return self.mail(_address(line)), False
        if verb == "RCPT":
            return self.rcpt(_address(line))
        if verb == "DATA":
            if self.sender is None:
                return b"503 5.5.1 MAIL first\r\n", False
            if not self.recipients and not self.sink.lax_data:
                return b"554 5.5.1 no valid recipients\r\n", False
            if self.refuse_data:
                return b"554 5.7.1 DATA refused for this recipient\r\n", False
            self.in_data, self.scanned = True, 0
            self.muted = self.hostile in ("silent", "stalled")
            if self.hostile == "stalled":
                self.transport.pause_reading()
                self.sink._stalled.append(self.transport)
            return b"354 go ahead\r\n", self.hostile == "hangup"
        return b"502 5.5.2 command not implemented\r\n", False

    def mail(self, sender: str) -> bytes:
        if self.sender is not None:
            return b"503 5.5.1 nested MAIL\r\n"
        local = sender.split("@")[0]
        if local.startswith("refused"):
            return b"553 5.7.1 sender refused\r\n"
        if local.startswith("login"):
            return b"530 5.7.0 authentication required\r\n"
        self.sender = sender
        if not self.sink.counts.first:
            self.sink.counts.first = time.monotonic()
        return b"250 2.1.0 OK\r\n"

    def rcpt(self, recipient: str) -> tuple[bytes, bool]:
        if self.sender is None:
            return b"503 5.5.1 MAIL first\r\n", False
        local = recipient.split("@")[0]
        self.hostile = next((h for h in HOSTILE if local.startswith(h)), self.hostile)
        if self.hostile == "garbled":
            return b"hello, this is not SMTP\r\n", False
        if local.startswith("nobody"):
            return b"550 5.1.1 no such user here\r\n", False
        if local.startswith("busy"):
            return b"451 4.2.1 mailbox busy, try again later\r\n", False
        if local.startswith("closing"):
            return b"421 4.3.2 shutting down\r\n", True
        self.refuse_data |= local.startswith("nodata")
        self.refuse_content |= local.startswith("spam")
        self.recipients.append(recipient)
        if self.hostile == "longline":
            return b"250 " + b"x" * LONG + CRLF, False
        if self.hostile == "manylines":
            return b"250-2.1.5 and more\r\n" * 5000 + b"250 2.1.5 OK\r\n", False
        if self.hostile == "endless":
            self.muted = True
            return b"250 " + b"x" * LONG, False
        return b"250 2.1.5 OK\r\n", False

    def message(self, end: int) -> tuple[bytes, bool]:
        """The reply to the content in buf up to end (its CR LF before the dot), and
        whether the connection closes after it."""
        sink, refuse = self.sink, self.refuse_content or not self.recipients
        sender, recipients, hostile = self.sender or "", self.recipients, self.hostile
        self.reset()
        if hostile == "shutdown":
            return b"421 4.3.2 shutting down\r\n", True
        if refuse:
            sink.counts.refused += 1
            return b"550 5.7.1 content refused\r\n", False
        counts = sink.counts
        counts.messages += 1
        counts.recipients += len(recipients)
        # Looked for where it lies, not in a copy: a benchmark's sink should cost little
        # per message (an address never starts a line with a dot, so stuffing is moot).
        stop = max(end, 0)  # what follows the content may name recipients too
        counts.personalised += all(self.buf.find(r.encode(), 0, stop) != -1 for r in recipients)
        counts.last = time.monotonic()
        if sink.keep or sink.on_message is not None:
            content = bytes(self.buf[: end + 2]).replace(b"\n..", b"\n.")
            content = content[1:] if content[:2] == b".." else content
            received = Received(sender, recipients, content)
            if sink.keep:
                sink.messages.append(received)
            if sink.on_message is not None:
                sink.on_message(received)
        if hostile == "chatty":
            return b"250 2.0.0 queued\r\n250 2.0.0 and one more thing\r\n", False
        return b"250 2.0.0 queued\r\n", False


def _address(line: str) -> str:
    """The address between the angle brackets of MAIL FROM:<...> or RCPT TO:<...>."""
    start, end = line.find("<"), line.find(">")
    return line[start + 1 : end] if 0 <= start < end else ""


def main() -> None:
    sink = Sink(keep=False)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(sink.serve())
    print(sink.port, flush=True)

    since = time.process_time()

    async def answer(line: str) -> dict[str, float]:
        nonlocal since
        if line == "reset":
            sink.counts, since = Counts(), time.process_time()
        # cpu: the sink's own seconds of CPU since the last reset.
        return dict(vars(sink.counts), cpu=time.process_time() - since)

    def control() -> None:
        for line in sys.stdin:
            counts = asyncio.run_coroutine_threadsafe(answer(line.strip()), loop).result()
            print(json.dumps(counts), flush=True)
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=control, daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
