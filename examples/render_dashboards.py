"""Fill each example's ``template.yaml`` dashboard from ``dashboards/batch-processing.json``.

    python examples/render_dashboards.py           # rewrite the templates
    python examples/render_dashboards.py --check   # exit 1 if a template is out of date

CloudFormation cannot read a local file into ``DashboardBody``, so the body is rendered with
``observed_batch.dashboards.render`` (the same as ``observed-batch dashboard``) and written inline
as an ``!Sub`` string whose names are the stack's own resources (``${OrdersFunction}``,
``${OrdersQueue.QueueName}``, ``${AWS::Region}``). The tests check the templates are up to date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from observed_batch import dashboards

__all__ = ["EXAMPLES", "main", "render_template"]

HERE = Path(__file__).resolve().parent
#: example -> render() arguments; values in ``${...}`` are CloudFormation references.
EXAMPLES: dict[str, dict[str, str]] = {
    "sqs_orders": {
        "service": "orders",
        "function": "${OrdersFunction}",
        "queue": "${OrdersQueue.QueueName}",
        "dlq": "${OrdersDeadLetterQueue.QueueName}",
    },
    "sqs_fifo": {
        "service": "orders-fifo",
        "function": "${OrdersFunction}",
        "queue": "${OrdersQueue.QueueName}",
        "dlq": "${OrdersDeadLetterQueue.QueueName}",
    },
    "kinesis_clickstream": {
        "service": "clickstream",
        "function": "${ClicksFunction}",
        "stream": "${ClickStream}",
        "dlq": "${ClicksDeadLetterQueue.QueueName}",
    },
    "dynamodb_stream": {
        "service": "order-changes",
        "function": "${ChangesFunction}",
        "dlq": "${ChangesDeadLetterQueue.QueueName}",
    },
}
NAMESPACE = "ObservedBatch"
_BLOCK = re.compile(
    r"(?P<begin>^(?P<indent> *)# BEGIN generated from dashboards/batch-processing\.json[^\n]*\n)"
    r"(?P<body>.*?)(?P<end>^ *# END generated)",
    re.MULTILINE | re.DOTALL,
)


def _dashboard(example: str) -> str:
    """The dashboard body as an ``!Sub`` template string."""
    arguments = EXAMPLES[example]
    # render() validates names, so references go in as sentinels and are swapped afterwards.
    sentinels = {key: f"OBREF{key.upper()}" for key, value in arguments.items() if value.startswith("${")}
    literal = {key: value for key, value in arguments.items() if key not in sentinels}
    body: dict[str, Any] = dashboards.render(namespace=NAMESPACE, **literal, **sentinels)
    # One widget per line: diffs stay readable, the template stays short.
    widgets = body.pop("widgets")
    head = json.dumps(body)[:-1]
    rows = ",\n".join("  " + json.dumps(widget) for widget in widgets)
    text = f'{head}, "widgets": [\n{rows}\n]}}'.replace("${", "${!")  # a literal ${ in Fn::Sub is written ${!
    for key, sentinel in sentinels.items():
        text = text.replace(sentinel, arguments[key])
    return text.replace(f'"{dashboards.SHIPPED_REGION}"', '"${AWS::Region}"').replace(
        f":{dashboards.SHIPPED_REGION}:", ":${AWS::Region}:"
    )


def render_template(example: str, template: str) -> str:
    """``template`` with its generated block replaced by the current dashboard."""
    match = _BLOCK.search(template)
    if match is None:
        raise ValueError(f"examples/{example}/template.yaml has no '# BEGIN generated ... # END generated' block")
    indent = match.group("indent")
    lines = [f"{indent}DashboardBody: !Sub |"]
    lines += [f"{indent}  {line}" for line in _dashboard(example).splitlines()]
    return template[: match.start("body")] + "\n".join(lines) + "\n" + template[match.start("end") :]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for example in EXAMPLES:
        path = HERE / example / "template.yaml"
        current = path.read_text(encoding="utf-8")
        expected = render_template(example, current)
        if expected == current:
            continue
        stale.append(str(path))
        if not check:
            path.write_text(expected, encoding="utf-8")
    if check and stale:
        print("out of date (run python examples/render_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print(f"updated {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
