"""Fill each example's ``template.yaml`` dashboard and alarm pack from the shipped dashboard and ``alarms``.

    python examples/render_dashboards.py           # rewrite the templates
    python examples/render_dashboards.py --check   # exit 1 if a template is out of date

CloudFormation cannot read a local file into ``DashboardBody``, so the body is rendered with
``observed_batch.dashboards.render`` (the same as ``observed-batch dashboard``) and written inline
as an ``!Sub`` string whose names are the stack's own resources (``${OrdersFunction}``,
``${OrdersQueue.QueueName}``, ``${AWS::Region}``). The alarm pack (``observed_batch.alarms.render_alarms``,
the same as ``observed-batch alarms``) goes in as one resource per line, its names as ``Ref`` /
``Fn::GetAtt`` / ``Fn::Sub``. The tests check the templates are up to date and pass cfn-lint.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from observed_batch import alarms, dashboards

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
        "table": "${OrdersTable}",
        "dlq": "${ChangesDeadLetterQueue.QueueName}",
    },
}
NAMESPACE = "ObservedBatch"
#: The examples' function timeout (``Globals``): adds the duration alarm.
TIMEOUT_S = 30
#: Stands for ``${AWS::AccountId}`` in the alarm widget's ARNs (render() checks for 12 digits).
_ACCOUNT_SENTINEL = "000000000000"
_BLOCK = re.compile(
    r"(?P<begin>^(?P<indent> *)# BEGIN generated from dashboards/batch-processing\.json[^\n]*\n)"
    r"(?P<body>.*?)(?P<end>^ *# END generated)",
    re.MULTILINE | re.DOTALL,
)
_ALARMS = re.compile(
    r"(?P<begin>^(?P<indent> *)# BEGIN generated alarms[^\n]*\n)(?P<body>.*?)(?P<end>^ *# END generated alarms)",
    re.MULTILINE | re.DOTALL,
)


def _dashboard(example: str) -> str:
    """The dashboard body as an ``!Sub`` template string."""
    arguments = EXAMPLES[example]
    # render() validates names, so references go in as sentinels and are swapped afterwards.
    sentinels = {key: f"OBREF{key.upper()}" for key, value in arguments.items() if value.startswith("${")}
    literal = {key: value for key, value in arguments.items() if key not in sentinels}
    body: dict[str, Any] = dashboards.render(
        namespace=NAMESPACE, account_id=_ACCOUNT_SENTINEL, timeout_s=TIMEOUT_S, **literal, **sentinels
    )
    # One widget per line: diffs stay readable, the template stays short.
    widgets = body.pop("widgets")
    head = json.dumps(body)[:-1]
    rows = ",\n".join("  " + json.dumps(widget) for widget in widgets)
    text = f'{head}, "widgets": [\n{rows}\n]}}'.replace("${", "${!")  # a literal ${ in Fn::Sub is written ${!
    for key, sentinel in sentinels.items():
        text = text.replace(sentinel, arguments[key])
    text = text.replace(f":{_ACCOUNT_SENTINEL}:", ":${AWS::AccountId}:")
    return text.replace(f'"{dashboards.SHIPPED_REGION}"', '"${AWS::Region}"').replace(
        f":{dashboards.SHIPPED_REGION}:", ":${AWS::Region}:"
    )


def _substitute(node: Any, sentinels: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _substitute(value, sentinels) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, sentinels) for value in node]
    if isinstance(node, str) and any(sentinel in node for sentinel in sentinels):
        if node in sentinels:
            inner = sentinels[node][2:-1]
            return {"Fn::GetAtt": inner.split(".", 1)} if "." in inner else {"Ref": inner}
        text = node.replace("${", "${!")
        for sentinel, reference in sentinels.items():
            text = text.replace(sentinel, reference)
        return {"Fn::Sub": text}
    return node


def _alarm_resources(example: str) -> list[str]:
    """The alarm pack's resources, one ``LogicalId: {...}`` line each (JSON is YAML flow style)."""
    arguments = EXAMPLES[example]
    sentinels = {f"OBREF{key.upper()}": value for key, value in arguments.items() if value.startswith("${")}
    names: dict[str, Any] = {k: f"OBREF{k.upper()}" if v.startswith("${") else v for k, v in arguments.items()}
    template = alarms.render_alarms(namespace=NAMESPACE, timeout_s=TIMEOUT_S, **names)
    resources = _substitute(template["Resources"], sentinels)
    return [f"{logical_id}: {json.dumps(resource)}" for logical_id, resource in resources.items()]


def render_template(example: str, template: str) -> str:
    """``template`` with its generated blocks replaced by the current dashboard and alarm pack."""
    match = _BLOCK.search(template)
    if match is None:
        raise ValueError(f"examples/{example}/template.yaml has no '# BEGIN generated ... # END generated' block")
    indent = match.group("indent")
    lines = [f"{indent}DashboardBody: !Sub |"]
    lines += [f"{indent}  {line}" for line in _dashboard(example).splitlines()]
    template = template[: match.start("body")] + "\n".join(lines) + "\n" + template[match.start("end") :]
    match = _ALARMS.search(template)
    if match is None:
        raise ValueError(f"examples/{example}/template.yaml has no '# BEGIN generated alarms ...' block")
    lines = [f"{match.group('indent')}{line}" for line in _alarm_resources(example)]
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
