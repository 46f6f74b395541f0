"""Small nodes for engine tests: they count calls, fail on demand, sleep, and use secrets."""

from __future__ import annotations

import threading
import time

from pydantic import Field

from pixelmill.node import ArtifactRef, Model, Node, NoRetry


class Calls:
    """Thread-safe call log shared by the test nodes (reset by each test that reads it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list = []

    def add(self, item):
        with self.lock:
            self.items.append(item)

    def clear(self):
        with self.lock:
            self.items.clear()


CALLS = Calls()


class EchoInputs(Model):
    value: object = None
    tag: str = ""


class EchoOutputs(Model):
    value: object = None


class Echo(Node):
    """Return the input value (deterministic, so it is cached)."""

    type = "t_echo"
    Inputs = EchoInputs
    Outputs = EchoOutputs
    deterministic = True

    def run(self, inputs, ctx):
        CALLS.add(("echo", ctx.step_id, inputs.value, time.monotonic()))
        return EchoOutputs(value=inputs.value)


class FlakyConfig(Model):
    fail_times: int = Field(1, ge=0)
    permanent: bool = False


class SeededInputs(Model):
    seed: int | None = None


class Seeded(Node):
    """Deterministic only when given a seed (like an image generator)."""

    type = "t_seeded"
    Inputs = SeededInputs
    Outputs = EchoOutputs

    def cacheable(self, inputs):
        return inputs.seed is not None

    def run(self, inputs, ctx):
        CALLS.add(("seeded", ctx.step_id, inputs.seed, time.monotonic()))
        return EchoOutputs(value=inputs.seed if inputs.seed is not None else time.monotonic_ns())


class FlakyOutputs(Model):
    attempt: int


class Flaky(Node):
    """Fail the first ``fail_times`` attempts of each run, then succeed."""

    type = "t_flaky"
    Config = FlakyConfig
    Outputs = FlakyOutputs

    def run(self, inputs, ctx):
        CALLS.add(("flaky", ctx.step_id, ctx.attempt, time.monotonic()))
        if ctx.attempt <= self.config.fail_times:
            if self.config.permanent:
                raise NoRetry(f"permanent failure {ctx.attempt}")
            raise RuntimeError(f"flaky failure {ctx.attempt}")
        return FlakyOutputs(attempt=ctx.attempt)


class SleepInputs(Model):
    seconds: float = 0.2


class SleepOutputs(Model):
    started: float
    ended: float


class Sleep(Node):
    """Sleep in small slices, reporting progress (cooperative cancellation)."""

    type = "t_sleep"
    Inputs = SleepInputs
    Outputs = SleepOutputs

    def run(self, inputs, ctx):
        start = time.monotonic()
        n = max(1, int(inputs.seconds / 0.02))
        for i in range(n):
            time.sleep(inputs.seconds / n)
            ctx.progress(i + 1, n)
        CALLS.add(("sleep", ctx.step_id, start, time.monotonic()))
        return SleepOutputs(started=start, ended=time.monotonic())


class GpuSleep(Sleep):
    """Like t_sleep, but declares GPU use (the executor runs GPU steps one at a time)."""

    type = "t_gpu_sleep"
    uses_gpu = True


class SecretInputs(Model):
    token: str


class SecretOutputs(Model):
    length: int
    echoed: str


class SecretUser(Node):
    """Take a secret as input and (carelessly) echo and log it: the engine must redact it."""

    type = "t_secret"
    Inputs = SecretInputs
    Outputs = SecretOutputs

    def run(self, inputs, ctx):
        ctx.logger.warning("using token %s", inputs.token)
        return SecretOutputs(length=len(inputs.token), echoed=f"token={inputs.token}")


TEST_NODES = [Echo, Flaky, Sleep, GpuSleep, SecretUser, Seeded]


class FileInputs(Model):
    text: str = "x"


class FileOutputs(Model):
    file: ArtifactRef


class FileWriter(Node):
    """Write one text artifact (for crash-recovery tests)."""

    type = "t_file"
    Inputs = FileInputs
    Outputs = FileOutputs

    def run(self, inputs, ctx):
        CALLS.add(("file", ctx.step_id, inputs.text, time.monotonic()))
        ref, path = ctx.new_artifact("out.txt", "text/plain")
        path.write_text(inputs.text)
        return FileOutputs(file=ref)


TEST_NODES.append(FileWriter)
