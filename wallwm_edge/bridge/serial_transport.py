"""Serial backend: COBS frames over pyserial (a UART, a USB adapter or a pseudo-terminal)."""

from __future__ import annotations

from wallwm_edge.bridge.framing import SerialDeframer, serial_frame
from wallwm_edge.bridge.transport import Transport, register_backend
from wallwm_edge.errors import LinkError


class SerialTransport(Transport):
    def __init__(self, port: str, baud: int = 1_000_000):
        import serial  # pyserial

        try:
            self.ser = serial.serial_for_url(port, baudrate=baud, timeout=0, write_timeout=2.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial port {port!r}: {e}") from None
        self.ser.reset_input_buffer()  # stale bytes from before we connected mean nothing
        self.port = port
        self.deframer = SerialDeframer()

    @property
    def errors(self) -> int:
        return self.deframer.errors

    # raw byte access: fault injection (wallwm_edge.bridge.faults) works on framed bytes
    def frame(self, msg: bytes) -> bytes:
        return serial_frame(msg)

    def write_raw(self, data: bytes) -> None:
        import serial

        try:
            self.ser.write(data)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"serial port {self.port!r}: write failed: {e}") from None

    def read_raw(self, timeout: float) -> bytes:
        import serial

        try:
            self.ser.timeout = max(timeout, 0.0)
            data = self.ser.read(1)
            if data and self.ser.in_waiting:
                data += self.ser.read(self.ser.in_waiting)
            return data
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"serial port {self.port!r}: read failed: {e}") from None

    def send(self, msg: bytes) -> None:
        self.write_raw(self.frame(msg))

    def recv(self, timeout: float) -> list[bytes]:
        return self.deframer.feed(self.read_raw(timeout))

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:  # noqa: BLE001 - closing a vanished device must not raise
            pass


@register_backend("serial")
def _open_serial(rest: str, opts: dict) -> Transport:
    return SerialTransport(rest, int(opts.get("baud", 1_000_000)))
