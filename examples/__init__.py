"""Deployable examples (SAM). Each folder is a Lambda function: ``app.py``, ``template.yaml``, ``events/``.

Run one locally without an AWS account::

    observed-batch invoke examples.sqs_orders.app:handler --event examples/sqs_orders/events/sample.json \
        --env-vars examples/sqs_orders/env.json
"""
