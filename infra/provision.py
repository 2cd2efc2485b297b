"""Create the table and queues that ``template.yaml`` declares on any AWS-compatible endpoint.

    python infra/provision.py --endpoint http://127.0.0.1:4566 [--prefix dynacron]

prints the ``export AWS_ENDPOINT_URL=... DYNACRON_TABLE=...`` line that ``dynacron local``
prints, for an emulator you run yourself (ministack, LocalStack, a moto server). It is the code
``dynacron local`` provisions with (``dynacron.local.provision``): the template is the one
source of the resources' keys, index, queue attributes and redrive policy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/provision.py", description=__doc__)
    parser.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:4566")
    parser.add_argument("--prefix", default="dynacron", help="resource name prefix")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    args = parser.parse_args(argv)

    import boto3

    from dynacron.local.provision import find_template, load_template, provision

    kw = {"endpoint_url": args.endpoint, "region_name": args.region,
          "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
          "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")}
    res = provision(boto3.client("dynamodb", **kw), boto3.client("sqs", **kw),
                    load_template(find_template()), prefix=args.prefix)
    values = {"AWS_ENDPOINT_URL": args.endpoint, "DYNACRON_TABLE": res.table_name,
              "DYNACRON_QUEUE_URL": res.queue_url, "DYNACRON_DLQ_URL": res.dlq_url}
    print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
