"""TTL outputs for triggers: a serial port (pyserial, when installed) or a logging stand-in.

An output is anything with ``set(on: bool)`` and ``close()``. `SerialOutput` drives a line the
two ways rigs are wired: by writing a byte to a microcontroller (Arduino, Teensy) that sets its
pin, or by toggling the adapter's RTS or DTR line directly. `LogOutput` records and logs each
change instead: for dry runs, tests, and machines without pyserial.

``open_output`` builds one from text (the command line's form):
``log[:NAME]``, ``serial:PORT`` (writes b"1" / b"0"), ``serial:PORT?line=rts`` (or dtr),
``serial:PORT?on=O&off=X&baud=9600``.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs

log = logging.getLogger("posezoo.live")


@runtime_checkable
class TTLOutput(Protocol):
    name: str

    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class LogOutput:
    """A TTL line that only logs: each change is kept in ``events`` as (unix time, on)."""

    def __init__(self, name: str = "ttl") -> None:
        self.name = name
        self.state = False
        self.events: list[tuple[float, bool]] = []

    def set(self, on: bool) -> None:
        on = bool(on)
        if on != self.state:
            self.state = on
            self.events.append((time.time(), on))
            log.info("TTL %s %s", self.name, "ON" if on else "off")

    def close(self) -> None:
        self.set(False)


class SerialOutput:
    """A TTL line through a serial port (needs pyserial).

    ``line=None`` writes ``on`` / ``off`` bytes (a microcontroller sets its pin); ``line="rts"``
    or ``"dtr"`` toggles that modem-control line of a USB-serial adapter. Only changes are sent,
    and ``close`` leaves the line off.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, line: str | None = None, on: bytes = b"1",
                 off: bytes = b"0") -> None:
        try:
            import serial  # pyserial, optional
        except ImportError:
            raise ImportError(f"a serial TTL output on {port} needs pyserial: pip install pyserial") from None
        if line not in (None, "rts", "dtr"):
            raise ValueError(f"serial line must be 'rts' or 'dtr' (or none, to write bytes), got {line!r}")
        try:
            self.port = serial.Serial(port, baudrate, timeout=0, write_timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise OSError(f"serial port {port} could not be opened ({exc}); check the port name and that no "
                          "other program holds it") from None
        self.name = port
        self.line = line
        self.on_bytes, self.off_bytes = on, off
        self.state: bool | None = None  # unknown until the first set
        self.set(False)

    def set(self, on: bool) -> None:
        on = bool(on)
        if on == self.state:
            return
        if self.line == "rts":
            self.port.rts = on
        elif self.line == "dtr":
            self.port.dtr = on
        else:
            self.port.write(self.on_bytes if on else self.off_bytes)
            self.port.flush()
        self.state = on

    def close(self) -> None:
        if self.port.is_open:
            try:
                self.set(False)
            finally:
                self.port.close()


def open_output(spec: str | TTLOutput | None) -> TTLOutput:
    """An output from its text form (see the module docstring), or the object itself.

    Without pyserial, ``serial:...`` warns and returns a `LogOutput`, so a processor can be
    tried on any machine; the warning says the line is not driven.
    """
    if spec is None:
        return LogOutput()
    if not isinstance(spec, str):
        if not isinstance(spec, TTLOutput):
            raise TypeError(f"an output needs set(on) and close(), got {type(spec).__name__}")
        return spec
    kind, _, rest = spec.partition(":")
    if kind == "log":
        return LogOutput(rest or "ttl")
    if kind != "serial" or not rest:
        raise ValueError(f"unknown output {spec!r}: use log[:NAME] or serial:PORT[?line=rts|dtr&on=1&off=0&baud=N]")
    port, _, query = rest.partition("?")
    opts = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(opts) - {"line", "on", "off", "baud"}
    if unknown:
        raise ValueError(f"{spec}: unknown serial options {sorted(unknown)} (use line, on, off, baud)")
    import importlib.util

    if importlib.util.find_spec("serial") is None:
        warnings.warn(f"pyserial is not installed (pip install pyserial): TTL changes for {port} are only "
                      "logged, the line is NOT driven", stacklevel=2)
        return LogOutput(port)
    return SerialOutput(port, baudrate=int(opts.get("baud", 115200)), line=opts.get("line") or None,
                        on=opts.get("on", "1").encode(), off=opts.get("off", "0").encode())
