"""Shipped CloudWatch dashboard bodies, installed as ``observed_batch.dashboard_bodies`` (JSON package data)."""
