"""ministack as an emulated AWS account, and our SAM application deployed onto it with sam.

ministack runs with ``AUTH=true``: every call a deployed function makes is checked against its
execution role, as on AWS. It lives in its own virtualenv (``.ministack``, made by
``make deploy-test``) because it pins botocore exactly; sam comes from ``.tools``. Everything
here is bounded in time, and the emulator is stopped by its process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
BUILT_TEMPLATE = ROOT / ".aws-sam" / "build" / "template.yaml"
MINISTACK_PYTHON = Path(os.environ.get("DYNACRON_MINISTACK_PYTHON", ROOT / ".ministack/bin/python"))
SAM = Path(os.environ.get("DYNACRON_SAM", ROOT / ".tools/bin/sam"))
REGION = "us-east-1"
# ministack's root credentials (its own AWS_ACCESS_KEY_ID/SECRET): the test acts as the account
# owner; the deployed functions act as their roles.
ROOT_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """``probe()`` until it returns something truthy; AssertionError naming ``what`` at the end."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


@dataclass
class Emulator:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment for clients acting as the account's root user."""
        return {**ROOT_KEYS, "AWS_ENDPOINT_URL": self.url, "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION}

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ROOT_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ROOT_KEYS["AWS_SECRET_ACCESS_KEY"],
        )

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def ministack() -> Iterator[Emulator]:
    """ministack on a free loopback port with IAM enforced; stopped by its process group."""
    if not MINISTACK_PYTHON.exists():
        raise AssertionError(f"{MINISTACK_PYTHON} missing: run `make deploy-test`")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="dynacron-deploy-"))
    log = workdir / "ministack.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DYNACRON_"))},
        **ROOT_KEYS,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "AUTH": "true",
        "LOG_LEVEL": "INFO",
        "TMPDIR": str(workdir),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MINISTACK_PYTHON), "-m", "ministack"],
            env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    emulator = Emulator(f"http://127.0.0.1:{port}", log, proc)
    try:
        wait_for("ministack answers", lambda: _healthy(emulator), 60, 0.2)
        yield emulator
    finally:
        _stop(proc)


def _healthy(emulator: Emulator) -> bool:
    if emulator.proc.poll() is not None:
        raise AssertionError(f"ministack exited: {emulator.log_text()[-2000:]}")
    try:
        with urllib.request.urlopen(emulator.url + "/_ministack/health", timeout=1):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Stack:
    name: str
    emulator: Emulator
    outputs: dict[str, str] = field(default_factory=dict)

    def settings_env(self) -> dict[str, str]:
        """What the stack's ExportLine tells a user to export, plus the emulator's endpoint."""
        env = dict(self.emulator.env())
        for pair in self.outputs["ExportLine"].removeprefix("export ").split():
            key, _, value = pair.partition("=")
            env[key] = value
        return env

    def function(self, logical_id: str) -> dict[str, Any]:
        cfn = self.emulator.client("cloudformation")
        res = cfn.describe_stack_resource(StackName=self.name, LogicalResourceId=logical_id)
        name = res["StackResourceDetail"]["PhysicalResourceId"]
        return self.emulator.client("lambda").get_function(FunctionName=name)["Configuration"]

    def role_name(self, function_logical_id: str) -> str:
        return self.function(function_logical_id)["Role"].rsplit("/", 1)[-1]

    def log_events(self, which: str) -> list[str]:
        """Every line the function ``which`` (``poller``/``worker``) wrote to its log group."""
        logs = self.emulator.client("logs")
        group = f"/aws/lambda/{self.name}-{which}"
        lines: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": group}
        try:
            while True:
                page = logs.filter_log_events(**kwargs)
                lines.extend(e["message"] for e in page.get("events", []))
                if not page.get("nextToken"):
                    return lines
                kwargs["nextToken"] = page["nextToken"]
        except logs.exceptions.ResourceNotFoundException:
            return lines


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The structured (Powertools JSON) lines among a function's log lines."""
    out = []
    for line in lines:
        for part in line.splitlines():
            part = part.strip()
            if part.startswith("{"):
                try:
                    out.append(json.loads(part))
                except ValueError:
                    continue
    return out


def sam(emulator: Emulator, *args: str, timeout_s: float = 240) -> str:
    """Run sam against the emulator; its output, or AssertionError with it."""
    env = {**os.environ, **emulator.env(), "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [str(SAM), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        output = done.stdout[-3000:] + done.stderr[-3000:]
        raise AssertionError(f"sam {' '.join(args)} failed:\n{output}")
    return done.stdout + done.stderr


def deploy(
    emulator: Emulator, name: str, template: Path = BUILT_TEMPLATE, *overrides: str
) -> Stack:
    """``sam deploy --resolve-s3`` of a built template, as the README tells a user to."""
    if not template.exists():
        raise AssertionError(f"{template} missing: run `make build` (make deploy-test does)")
    args = [
        "deploy", "--template-file", str(template), "--stack-name", name, "--resolve-s3",
        "--capabilities", "CAPABILITY_IAM", "--no-confirm-changeset",
        "--no-fail-on-empty-changeset", "--region", REGION,
    ]
    if overrides:
        args += ["--parameter-overrides", *overrides]
    sam(emulator, *args)
    cfn = emulator.client("cloudformation")
    described = cfn.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return Stack(name, emulator, outputs)


# --- emulator gaps, each worked around only while it still exists ----------------------------

ESM_STRING_ERROR = "ESM SQS poller error: '>=' not supported between instances of 'int' and 'str'"


def fix_event_source_concurrency(stack: Stack, maximum: int) -> None:
    """ministack gap: its CloudFormation stores ``ScalingConfig.MaximumConcurrency`` as the string
    the parameter resolves to, and its SQS poller then fails on every tick and delivers nothing.
    Asserts the gap is still there (remove this when it is not), then sets the number directly.
    """
    emulator = stack.emulator
    wait_for(
        "ministack's ESM poller still fails on a string MaximumConcurrency (if it no longer "
        "does, delete fix_event_source_concurrency)",
        lambda: ESM_STRING_ERROR in emulator.log_text(),
        30,
        0.5,
    )
    lam = emulator.client("lambda")
    worker = stack.function("WorkerFunction")["FunctionName"]
    for mapping in lam.list_event_source_mappings(FunctionName=worker)["EventSourceMappings"]:
        lam.update_event_source_mapping(
            UUID=mapping["UUID"], ScalingConfig={"MaximumConcurrency": maximum}
        )


def grant_send_message_batch(stack: Stack) -> None:
    """ministack gap: under AUTH=true it authorizes SendMessageBatch (and every other batch
    action: ChangeMessageVisibilityBatch, granted to the worker below) as an action of its own,
    while AWS authorizes it with sqs:SendMessage ("You cannot set permissions explicitly for
    SendMessageBatch ... setting permissions for SendMessage ... sets permissions for the
    corresponding batch versions", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/
    SQSDeveloperGuide/sqs-batch-api.html). Asserts the gap is still there with a probe queue the
    poller's role may SendMessage to, then grants the batch action on the stack's queues, out of
    band (the template stays as AWS needs it)."""
    emulator = stack.emulator
    iam, sqs = emulator.client("iam"), emulator.client("sqs")
    role = stack.role_name("PollerFunction")
    probe_url = sqs.create_queue(QueueName=f"{stack.name}-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    _put_policy(iam, role, "probe", ["sqs:SendMessage"], [probe_arn])
    try:
        probe = _as_role(emulator, iam.get_role(RoleName=role)["Role"]["Arn"], "sqs")
        probe.send_message(QueueUrl=probe_url, MessageBody="probe")
        try:
            probe.send_message_batch(QueueUrl=probe_url, Entries=[{"Id": "1", "MessageBody": "p"}])
        except probe.exceptions.ClientError as exc:
            assert "SendMessageBatch" in str(exc), exc
        else:
            raise AssertionError(
                "ministack now authorizes SendMessageBatch with sqs:SendMessage, as AWS does: "
                "delete grant_send_message_batch"
            )
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="probe")
        sqs.delete_queue(QueueUrl=probe_url)
    # the default lane's other queues (WorkQueueCount > 1) are sent to like WorkQueue
    extra = [u for u in stack.outputs.get("WorkQueueUrls", "").split(",") if u]
    arns = [
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for url in (stack.outputs["QueueUrl"], stack.outputs["DeadLetterQueueUrl"], *extra)
    ]
    _put_policy(iam, role, "ministack-send-message-batch", ["sqs:SendMessageBatch"], arns)
    # The same gap for the worker's ChangeMessageVisibilityBatch (authorized by AWS with
    # sqs:ChangeMessageVisibility, which the template grants): ministack maps no batch action.
    worker_role = stack.role_name("WorkerFunction")
    lanes = [stack.outputs["QueueUrl"], *stack.outputs["LaneQueueUrls"].split(","), *extra]
    lane_arns = [
        sqs.get_queue_attributes(QueueUrl=url.partition("=")[2] or url,
                                 AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for url in lanes
    ]  # fmt: skip
    _put_policy(iam, worker_role, "ministack-change-visibility-batch",
                ["sqs:ChangeMessageVisibilityBatch"], lane_arns)  # fmt: skip


def _put_policy(iam: Any, role: str, name: str, actions: list[str], resources: list[str]) -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}],
    }
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))


def _as_role(emulator: Emulator, role_arn: str, service: str) -> Any:
    import boto3

    creds = emulator.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="probe")[
        "Credentials"
    ]
    return boto3.client(
        service,
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def without_actions(template: Path, actions: list[str], name: str) -> Path:
    """A copy of the built template (beside it, so its CodeUris resolve; as JSON, which
    CloudFormation reads too) in which no statement grants ``actions``; a statement left with
    no action is dropped whole (an empty Action is no valid statement)."""
    from dynacron.local.provision import load_template

    doc = load_template(template)
    removed = set()
    for res in doc["Resources"].values():
        for policy in res.get("Properties", {}).get("Policies", []) or []:
            policy = policy.get("PolicyDocument", policy)  # a role's inline policy
            kept = []
            for st in policy.get("Statement", []):
                removed.update(set(st["Action"]) & set(actions))
                st["Action"] = [a for a in st["Action"] if a not in actions]
                if st["Action"]:
                    kept.append(st)
            policy["Statement"] = kept
    assert removed == set(actions), (actions, removed)
    out = template.with_name(name)
    out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return out
