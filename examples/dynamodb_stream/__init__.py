"""Example Lambda function; see app.py and template.yaml."""
