"""deploy/: the CloudFormation template, the Lambda zip, the systemd units and the crontab."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "template.yaml"


def template() -> Any:
    loaded, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return loaded


def test_template_passes_cfn_lint() -> None:
    """cfn-lint reports no error and no warning on deploy/template.yaml."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_receipt_rule_stores_then_invokes() -> None:
    """The receipt rule writes to S3 first and then invokes mailxfer.handler, and the
    Lambda is told the same bucket and prefix the S3 action uses."""
    res = template()["Resources"]
    rule = res["InboundRule"]["Properties"]["Rule"]
    assert [next(iter(a)) for a in rule["Actions"]] == ["S3Action", "LambdaAction"]
    s3_action = rule["Actions"][0]["S3Action"]
    fn = res["Function"]["Properties"]
    assert fn["Handler"] == "mailxfer.handler"
    env = fn["Environment"]["Variables"]
    assert env["MAILXFER_BUCKET"] == s3_action["BucketName"]
    assert env["MAILXFER_PREFIX"] == s3_action["ObjectKeyPrefix"]
    assert "MAILRECV_SECRET_SSM" in env
    assert "MAILRECV_SECRET" not in env
    assert rule["Name"] == {"Fn::Sub": "${AWS::StackName}-inbound"}


def test_function_role_is_least_privilege() -> None:
    """The Lambda's role names a resource in every statement: no wildcard resource, and
    S3 object access only under the inbound prefix."""
    res = template()["Resources"]
    statements = res["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert all(s["Resource"] != "*" for s in statements)
    assert sorted(by_sid["ReadAndDeleteInboundMail"]["Action"]) == [
        "s3:DeleteObject",
        "s3:GetObject",
    ]
    assert by_sid["ReadAndDeleteInboundMail"]["Resource"] == {
        "Fn::Sub": "${MailBucket.Arn}/${ObjectPrefix}*"
    }


def test_failures_go_to_a_queue_and_a_schedule_sweeps() -> None:
    """Failed events end in the SQS queue, and the schedule sends the handler a sweep."""
    res = template()["Resources"]
    dest = res["FunctionInvokeConfig"]["Properties"]["DestinationConfig"]["OnFailure"]
    assert dest["Destination"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}
    target = res["SweepRule"]["Properties"]["Targets"][0]
    assert target["Input"] == {"Fn::Sub": '{"sweep": {"older_than": "${SweepAge}"}}'}
    types = res["EventsDestination"]["Properties"]["EventDestination"]["MatchingEventTypes"]
    assert sorted(types) == ["bounce", "complaint", "delivery", "deliveryDelay", "reject"]


def references(value: Any) -> set[str]:
    """The resources and parameters a template value names (Ref, GetAtt, Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub" and isinstance(inner, str):
                found |= {n.split(".")[0] for n in re.findall(r"\$\{([^}!]+)\}", inner)}
            found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def test_inbound_delivery_selects_lambda_or_sns() -> None:
    """InboundDelivery chooses the deployment: the Lambda and everything naming it exist
    only with "lambda"; otherwise one receipt rule stores in the same bucket and prefix and
    notifies the inbound topic (sns-s3), or publishes the message to it in base64
    (sns-inline), the receiver's /ses-inbound URL subscribes to the topic, and SES may
    write the bucket for either rule."""
    loaded = template()
    res = loaded["Resources"]
    assert loaded["Parameters"]["InboundDelivery"]["AllowedValues"] == [
        "lambda",
        "sns-s3",
        "sns-inline",
    ]
    assert loaded["Parameters"]["InboundDelivery"]["Default"] == "lambda"
    lambda_only = {"Function", "FunctionRole", "FailureQueue", "SweepRule"}
    for name, resource in res.items():
        if references(resource) & lambda_only or name in lambda_only:
            assert resource.get("Condition") == "UseLambda", name
    assert res["InboundRule"]["Condition"] == "UseLambda"
    sns_rule = res["InboundSnsRule"]
    assert sns_rule["Condition"] == "UseSns"
    # Its own name: switching deployments creates it before the Lambda's rule is deleted.
    assert sns_rule["Properties"]["Rule"]["Name"] == {"Fn::Sub": "${AWS::StackName}-inbound-sns"}
    (choice,) = sns_rule["Properties"]["Rule"]["Actions"]
    condition, inline, stored = choice["Fn::If"]
    assert condition == "SnsInline"
    assert inline == {"SNSAction": {"TopicArn": {"Ref": "InboundTopic"}, "Encoding": "Base64"}}
    lambda_store = res["InboundRule"]["Properties"]["Rule"]["Actions"][0]["S3Action"]
    assert stored == {"S3Action": {**lambda_store, "TopicArn": {"Ref": "InboundTopic"}}}
    subscription = res["InboundSubscription"]
    assert subscription["Condition"] == "HasInboundEndpoint"
    assert subscription["Properties"]["Protocol"] == "https"
    retry = subscription["Properties"]["DeliveryPolicy"]["healthyRetryPolicy"]
    assert retry["numRetries"] <= 100
    (write, _tls) = res["MailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allowed = write["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert allowed.endswith(":receipt-rule/${AWS::StackName}-inbound*")
    conditions = loaded["Conditions"]
    for name, value in (("UseLambda", "lambda"), ("SnsInline", "sns-inline")):
        assert conditions[name] == {"Fn::Equals": [{"Ref": "InboundDelivery"}, value]}
    assert conditions["UseSns"] == {"Fn::Not": [{"Condition": "UseLambda"}]}


def test_receiver_may_only_read_and_delete_inbound_mail() -> None:
    """The policy offered to the receiver's identity for sns-s3 allows reading and
    deleting objects under the inbound prefix and nothing else."""
    res = template()["Resources"]
    policy = res["InboundReaderPolicy"]
    assert policy["Condition"] == "SnsStored"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["s3:DeleteObject", "s3:GetObject"]
    assert statement["Resource"] == {"Fn::Sub": "${MailBucket.Arn}/${ObjectPrefix}*"}
    outputs = template()["Outputs"]
    assert outputs["InboundTopicArn"]["Condition"] == "UseSns"
    assert outputs["InboundReaderPolicyArn"]["Condition"] == "SnsStored"


def test_lambda_zip_is_mailxfer_alone_and_imports(tmp_path: Path) -> None:
    """`make lambda-zip` packs only mailxfer/, and the handler imports from the zip with
    nothing but boto3 beside it (no routemail, mailrecv or flask)."""
    dist = tmp_path / "dist"
    subprocess.run(
        ["make", "-s", "lambda-zip", f"LAMBDA_BUILD={tmp_path / 'build'}", f"DIST={dist}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    archive = dist / "mailxfer.zip"
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    assert all(n.startswith("mailxfer/") for n in names), names
    assert "mailxfer/handler.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    boto3_site = str(Path(boto3.__file__).resolve().parent.parent)
    probe = (
        "import sys, importlib.util\n"
        f"sys.path[:0] = [{str(archive)!r}]\n"
        f"sys.path.append({boto3_site!r})\n"
        "import mailxfer\n"
        "assert mailxfer.__file__.startswith(sys.path[0]), mailxfer.__file__\n"
        "assert callable(mailxfer.handler)\n"
        "import mailxfer.cli, mailxfer.sweep, mailxfer.secrets\n"
        "for name in ('routemail', 'mailrecv', 'flask', 'boto3'):\n"
        "    assert name not in sys.modules, name\n"
        "print(importlib.util.find_spec('routemail'))\n"
        "from mailxfer.events import EventError\n"
        "try:\n"
        "    mailxfer.handler({'Records': []}, None)\n"
        "except EventError as exc:\n"
        "    print(exc)\n"
    )
    # -S: no site-packages, so the editable install cannot supply the package.
    env = {
        "MAILRECV_URL": "http://127.0.0.1:9/mailrecv",
        "MAILRECV_SECRET": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "None",
        "event has no Records list: not an SES, S3 or SNS event",
    ]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["mailrecv.service", "routemail-run.service"])
def test_service_units_run_project_commands(name: str) -> None:
    """Each service runs an entry point of this project from the venv, with the
    configuration and data paths in its environment."""
    service = unit(name)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith(service["WorkingDirectory"] + "/.venv/bin/")
    environment = (DEPLOY / name).read_text()
    assert "ROUTEMAIL_CONFIG=" in environment and "ROUTEMAIL_DATA=" in environment
    if name == "mailrecv.service":
        assert argv[1:] == ["-c", "deploy/gunicorn.conf.py", "mailrecv.wsgi:app"]
        assert (ROOT / argv[2]).is_file()
    else:
        assert Path(argv[0]).name == "routemail" and argv[1] == "run"


def test_timer_and_crontab_run_routemail() -> None:
    """The timer starts routemail-run.service, and the crontab's active line runs
    the same command."""
    timer = unit("routemail-run.timer")["Timer"]
    assert timer["Unit"] == "routemail-run.service"
    assert (DEPLOY / timer["Unit"]).is_file()
    service_cmd = unit("routemail-run.service")["Service"]["ExecStart"]
    jobs = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    assert ".venv/bin/" + Path(service_cmd.split()[0]).name + " run --quiet" in fields[5]
